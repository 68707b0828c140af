"""Training checkpoints: safetensors for tensors, JSON for the rest (no pickles to trust), each with checksums.

A checkpoint is written to a temporary folder and swapped in, so a kill at any moment leaves the previous one
readable; on load every file is checked against its sha256, and a corrupt copy is set aside for the previous
one. :func:`prepare` keeps a run from resuming what another run (other code, weights, data or settings) wrote.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from distilflow.config.loading import ParamsError
from distilflow.runtime.imports import SRC, closure

FINGERPRINT_FILE = "fingerprint.json"
COMPUTE = "compute"
"""The fingerprint's key for the resolved device, autocast, world size (training.schedule_fingerprint)."""


class ResumeRefused(ParamsError):
    """A checkpoint this run would resume was written on other hardware or another torchrun size."""


def _flatten_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for index, values in state["state"].items():
        for key, value in values.items():
            name = f"{index}.{key}"
            if torch.is_tensor(value):
                tensors[name] = value.detach().cpu().contiguous()
            else:
                scalars[name] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, value in [*tensors.items(), *meta["scalars"].items()]:
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def _rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Every generator a step can draw from: torch (dropout), CUDA, numpy and Python's ``random``."""
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        tensors["cuda"] = torch.cuda.get_rng_state()
    kind, keys, position, has_gauss, gauss = np.random.get_state(legacy=True)
    python_version, python_state, python_gauss = random.getstate()
    meta = {
        "numpy": [kind, np.asarray(keys).tolist(), position, has_gauss, gauss],
        "python": [python_version, list(python_state), python_gauss],
    }
    return tensors, meta


def _set_rng_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["torch"])
    if "cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["cuda"])
    kind, keys, position, has_gauss, gauss = meta["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), position, has_gauss, gauss))
    version, state, python_gauss = meta["python"]
    random.setstate((version, tuple(state), python_gauss))


def _atomic_folder(folder: Path) -> Path:
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def _commit_folder(tmp: Path, folder: Path) -> None:
    """Swap the finished folder in; a kill at any point leaves either the old or the new one readable."""
    old = folder.with_name(folder.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        folder.rename(old)
    tmp.rename(folder)
    shutil.rmtree(old, ignore_errors=True)


def _checksums(folder: Path) -> dict[str, str]:
    return {file.name: _sha256(file) for file in sorted(folder.glob("*.safetensors"))}


def _sha256(file: Path) -> str:
    digest = hashlib.sha256()
    with file.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify(folder: Path) -> str | None:
    """Why the checkpoint in ``folder`` cannot be trusted, or None when every file matches its checksum."""
    try:
        state = json.loads((folder / "state.json").read_text())
    except (OSError, ValueError) as error:
        return f"state.json unreadable ({error})"
    recorded = state.get("sha256") if isinstance(state, dict) else None
    if not isinstance(recorded, dict) or not recorded:
        return "no checksums recorded"
    actual = _checksums(folder)
    bad = sorted(name for name in recorded if actual.get(name) != recorded[name])
    return f"checksum mismatch in {', '.join(bad)}" if bad else None


def _readable(folder: Path) -> Path | None:
    """The committed folder if intact, else the previous one (a kill between the two renames, or corruption).

    A corrupt copy is set aside beside the run's folder (``teacher-last.corrupt``), with a message saying why:
    it outlives the run's clean-up, so a person can look at it.
    """
    for candidate in (folder, folder.with_name(folder.name + ".old")):
        if not candidate.exists():
            continue
        problem = verify(candidate)
        if problem is None:
            return candidate
        aside = candidate.parent.with_name(f"{candidate.parent.name}-{candidate.name}.corrupt")
        shutil.rmtree(aside, ignore_errors=True)
        candidate.rename(aside)
        print(f"checkpoint {candidate} is corrupt ({problem}): set aside as {aside}", file=sys.stderr)
    return None


def _cpu_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}


def save_checkpoint(
    folder: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    progress: dict[str, Any],
    scaler: torch.amp.GradScaler | None = None,
) -> None:
    """Write to a temporary folder and rename: a kill mid-write leaves the previous checkpoint intact."""
    tmp = _atomic_folder(folder)
    save_file(_cpu_state(model), tmp / "model.safetensors")
    tensors, optim_meta = _flatten_optimizer(optimizer.state_dict())
    save_file(tensors, tmp / "optimizer.safetensors")
    rng_tensors, rng_meta = _rng_state()
    save_file(rng_tensors, tmp / "rng.safetensors")
    state = {
        "progress": progress,
        "optimizer": optim_meta,
        "scheduler": scheduler.state_dict(),
        "rng": rng_meta,
        "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else None,
    }
    state["sha256"] = _checksums(tmp)
    (tmp / "state.json").write_text(json.dumps(state, default=float))
    _commit_folder(tmp, folder)


def load_checkpoint(
    folder: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: torch.amp.GradScaler | None = None,
) -> dict[str, Any]:
    model.load_state_dict(load_file(folder / "model.safetensors"))
    state = json.loads((folder / "state.json").read_text())
    optimizer.load_state_dict(_unflatten_optimizer(load_file(folder / "optimizer.safetensors"), state["optimizer"]))
    scheduler.load_state_dict(state["scheduler"])
    if scaler is not None and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    _set_rng_state(load_file(folder / "rng.safetensors"), state["rng"])
    progress: dict[str, Any] = state["progress"]
    return progress


def save_best(folder: Path, weights: dict[str, torch.Tensor], step: int, metric: float) -> None:
    tmp = _atomic_folder(folder)
    save_file(weights, tmp / "model.safetensors")
    (tmp / "state.json").write_text(json.dumps({"step": step, "metric": metric, "sha256": _checksums(tmp)}))
    _commit_folder(tmp, folder)


def save_model(folder: Path, model: torch.nn.Module, record: dict[str, Any]) -> None:
    """A finished model's weights and a JSON ``record`` of it, written as a checkpoint is (atomic, checksummed)."""
    tmp = _atomic_folder(folder)
    save_file(_cpu_state(model), tmp / "model.safetensors")
    (tmp / "state.json").write_text(json.dumps({"record": record, "sha256": _checksums(tmp)}, default=float))
    _commit_folder(tmp, folder)


def load_model(folder: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    """What :func:`save_model` wrote: weights and record; None when there is none or no intact copy."""
    readable = _readable(folder)
    if readable is None:
        return None
    return load_file(readable / "model.safetensors"), _record(readable)


def saved_record(folder: Path) -> dict[str, Any] | None:
    """The record :func:`save_model` wrote, without loading the weights; None when there is no intact copy."""
    readable = _readable(folder)
    return _record(readable) if readable is not None else None


def _record(readable: Path) -> dict[str, Any]:
    """The record of a folder :func:`_readable` already verified (its checksums are not hashed again)."""
    record: dict[str, Any] = json.loads((readable / "state.json").read_text())["record"]
    return record


def prepare(folder: Path, fingerprint: dict[str, Any]) -> None:
    """Make ``folder`` hold only checkpoints of this exact run; set others aside with a message saying why.

    ``fingerprint`` names everything a resumed run must share with the one that wrote the checkpoint: code,
    starting weights, data version, settings, library versions. Any difference means training starts afresh.
    A checkpoint that differs only in how it computed (``COMPUTE``: device, precision, world size) is refused
    instead: nothing the person changed on purpose says to throw its progress away, and resuming it would go on
    under another schedule, so they choose (ResumeRefused says how).
    """
    file = folder / FINGERPRINT_FILE
    if folder.exists():
        try:
            previous = json.loads(file.read_text())
        except (OSError, ValueError):
            previous = None
        if previous != fingerprint:
            changed = sorted(
                key for key in {*fingerprint, *(previous or {})} if (previous or {}).get(key) != fingerprint.get(key)
            )
            if previous and changed == [COMPUTE] and _resumable(folder):
                raise ResumeRefused(_refusal(folder, previous.get(COMPUTE) or {}, fingerprint.get(COMPUTE) or {}))
            aside = folder.with_name(folder.name + ".set-aside")
            shutil.rmtree(aside, ignore_errors=True)
            folder.rename(aside)
            why = f"it was written with another {', '.join(changed)}" if previous else "no fingerprint recorded"
            print(
                f"not resuming from {folder}: {why}; set aside as {aside.name}, training starts fresh", file=sys.stderr
            )
    folder.mkdir(parents=True, exist_ok=True)
    file.write_text(json.dumps(fingerprint, indent=2, sort_keys=True) + "\n")


def _resumable(folder: Path) -> bool:
    """Whether a run would resume from ``folder`` (a kill before the first checkpoint leaves none)."""
    return any((folder / name).exists() for name in ("last", "last.old"))


def _refusal(folder: Path, before: dict[str, Any], now: dict[str, Any]) -> str:
    changes = ", ".join(
        f"{key} {before.get(key)} -> {now.get(key)}"
        for key in sorted({*before, *now})
        if before.get(key) != now.get(key)
    )

    def described(compute: dict[str, Any]) -> str:
        return (
            f"{compute.get('device')}, {compute.get('autocast')}, {compute.get('world_size')} process(es), "
            f"{compute.get('examples_per_step')} examples per optimizer step"
        )

    return (
        f"not resuming from {folder}: it was written on {described(before)}; this run is on {described(now)} "
        f"({changes}), so it would continue on another schedule. To start over, delete {folder}; to continue it, "
        f"rerun as it was written (run.device, run.precision, "
        f"torchrun --nproc_per_node={before.get('world_size')}, or no torchrun for 1)."
    )


def source_digest(*modules: str, src: Path = SRC) -> str:
    """sha256 over the source of ``modules`` and of everything they import within distilflow (runtime.imports): the
    code that trains, the same whichever process runs it (a cold `distilflow stage`, the warm host's fork, a flow run
    in-process), whatever else that process has imported."""
    digest = hashlib.sha256()
    for file in sorted(closure(*modules, src=src)):
        digest.update(file.relative_to(src).as_posix().encode() + b"\0" + file.read_bytes() + b"\0")
    return digest.hexdigest()


def folder_digest(folder: Path, pattern: str = "*.safetensors") -> str:
    """sha256 of a model folder's weight files (names and bytes)."""
    digest = hashlib.sha256()
    for file in sorted(Path(folder).glob(pattern)):
        digest.update(file.name.encode())
        digest.update(_sha256(file).encode())
    return digest.hexdigest()
