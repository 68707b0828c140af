"""The CUDA path proven in one command (issue #34): tests, fine-tuning, labelling, distillation, Trainer comparison.

Run by scripts/gpu_check.sh on the lent GPU machine (docs/gpu.md), where PyTorch and transformers are installed but
MLflow, DVC, Prefect and Great Expectations are not. Every part calls the library functions the stages call
(no MLflow run around them) and has a time budget; the JSON in the output folder is rewritten after each part,
so a run stopped by a time limit still returns the parts it finished. ``--device cpu --quick`` is the dry run
the default suite runs (tests/unit/test_gpu_check.py).

Only the standard library is imported at the top: a missing package then shows up in the JSON, not as a traceback.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import shlex
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from types import FrameType
from typing import Any

from gpu_check_parts import PARTS, Context, load_data

ROOT = Path(__file__).resolve().parents[1]
RESULT_FILE = "gpu_check.json"
# Seconds per part on an H100. Expected use is about half of each (docs/gpu.md); the sum stays under 8 minutes.
BUDGETS_S: dict[str, float] = {"data": 25, "tests": 45, "compare": 40, "teacher": 150, "label": 100, "distill": 100}
PACKAGES = ("datasets", "evaluate", "pydantic", "pyarrow", "pandas", "fsspec", "huggingface_hub", "numpy", "pytest")
QUICK_BUDGET_S = 120.0  # per part in the dry run: it only has to finish, on a CPU others share


class BudgetExceeded(Exception):
    """A part ran past its time budget; the figures it recorded so far are kept."""


@contextmanager
def time_budget(seconds: float) -> Iterator[None]:
    """Raise BudgetExceeded in the main thread once ``seconds`` have passed (the check runs single-threaded)."""

    def expire(signum: int, frame: FrameType | None) -> None:
        raise BudgetExceeded(f"stopped at its {seconds:.0f} s budget")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class Report:
    """The one JSON the check leaves: written whole after every part, through a rename, so it is never half."""

    def __init__(self, out: Path, command: str) -> None:
        out.mkdir(parents=True, exist_ok=True)
        self.file = out / RESULT_FILE
        self.started = time.perf_counter()
        self.data: dict[str, Any] = {
            "command": command,
            "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        self.data["parts"] = {}

    def save(self) -> None:
        self.data["wall_s"] = round(time.perf_counter() - self.started, 1)
        tmp = self.file.with_name(self.file.name + ".tmp")
        tmp.write_text(json.dumps(self.data, indent=2, default=str) + "\n")
        tmp.replace(self.file)


def log(message: str) -> None:
    print(f"[gpu-check {time.strftime('%H:%M:%S')}] {message}", flush=True)


def package_versions() -> dict[str, str | None]:
    """What the library's imports resolve to there (the carried wheels among them), found without importing."""
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def environment() -> dict[str, Any]:
    """The machine and library versions; imports torch here, so a missing one is reported, not raised."""
    facts: dict[str, Any] = {"python": platform.python_version(), "hostname": platform.node()}
    facts["packages"] = package_versions()
    try:
        import torch
        import transformers
    except ImportError as error:
        return {**facts, "import_error": str(error)}
    facts.update(torch=torch.__version__, transformers=transformers.__version__, cuda=torch.version.cuda)
    facts["cuda_available"] = torch.cuda.is_available()
    if torch.cuda.is_available():
        properties = torch.cuda.get_device_properties(0)
        facts.update(
            gpu=torch.cuda.get_device_name(0),
            gpu_memory_gib=round(properties.total_memory / 2**30, 1),
            bf16_supported=torch.cuda.is_bf16_supported(),
            cudnn=torch.backends.cudnn.version(),
        )
    return facts


def _peak_memory_mb(device: str) -> float | None:
    import torch

    if device != "cuda" or not torch.cuda.is_available():
        return None
    return round(torch.cuda.max_memory_allocated() / 2**20, 1)


def _reset_peak_memory(device: str) -> None:
    import torch

    if device == "cuda" and torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def run_part(report: Report, name: str, work: Callable[[dict[str, Any]], None], budget_s: float, device: str) -> bool:
    """One part under its budget; its record (status, figures, seconds, peak GPU memory) goes into the JSON."""
    figures: dict[str, Any] = {}
    record: dict[str, Any] = {"budget_s": budget_s}
    log(f"{name}: started (budget {budget_s:.0f} s)")
    _reset_peak_memory(device)
    started = time.perf_counter()
    try:
        with time_budget(budget_s):
            work(figures)
        record["status"] = "ok"
    except BudgetExceeded as stop:
        record.update(status="over_budget", error=str(stop))
    except Exception as error:  # a failed part is a result to report; the next parts still run
        record.update(status="failed", error=f"{type(error).__name__}: {error}")
        record["traceback"] = traceback.format_exc(limit=6)[-3000:]
    record["seconds"] = round(time.perf_counter() - started, 1)
    record["peak_gpu_memory_mb"] = _peak_memory_mb(device)
    record["figures"] = figures
    report.data["parts"][name] = record
    report.save()
    shown = {k: v for k, v in figures.items() if isinstance(v, int | float | str) and not isinstance(v, bool)}
    log(f"{name}: {record['status']} in {record['seconds']} s {json.dumps(shown, default=str)[:600]}")
    return record["status"] == "ok"


def skip_part(report: Report, name: str, reason: str) -> None:
    report.data["parts"][name] = {"status": "skipped", "reason": reason}
    report.save()
    log(f"{name}: skipped ({reason})")


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="folder for gpu_check.json (on the device: $OUT)")
    parser.add_argument("--data-dir", type=Path, default=ROOT / "gpu" / "sst2", help="SST-2 train.tsv and dev.tsv")
    parser.add_argument("--teacher", default=str(ROOT / "gpu" / "teacher"), help="model.teacher: a folder or name")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--quick", action="store_true", help="a few steps of every part on a slice (the dry run)")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, from {', '.join(PARTS)}")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: OUT/../gpu-check-work)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    command = os.environ.get("GPU_CHECK_COMMAND") or shlex.join(["python", "scripts/gpu_check.py", *(argv or [])])
    report = Report(args.out, command)
    report.data["environment"] = environment()
    wanted = [name.strip() for name in args.parts.split(",") if name.strip()]
    unknown = sorted(set(wanted) - set(PARTS))
    if unknown:
        parser().error(f"--parts: unknown {', '.join(unknown)}; known: {', '.join(PARTS)}")
    report.data["settings"] = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    report.save()
    log(f"environment: {json.dumps(report.data['environment'])}")
    work_dir = args.work or args.out.resolve().parent / "gpu-check-work"
    work_dir.mkdir(parents=True, exist_ok=True)

    def budget(name: str) -> float:
        return QUICK_BUDGET_S if args.quick else BUDGETS_S[name]

    context: list[Context] = []
    if not run_part(
        report, "data", lambda f: context.append(load_data(args, work_dir, f)), budget("data"), args.device
    ):
        for name in wanted:
            skip_part(report, name, "the data part failed")
        return 1
    ctx = context[0]
    report.data["settings"]["params_overrides"] = ctx.overrides
    for name in wanted:
        part = PARTS[name]
        missing = part.needs(ctx)
        if missing:
            skip_part(report, name, missing)
            continue
        run_part(report, name, functools.partial(part.run, ctx), budget(name), args.device)
    failed = [n for n, r in report.data["parts"].items() if r["status"] not in ("ok",)]
    report.data["summary"] = {"ok": not failed, "not_ok": failed}
    report.save()
    log(f"done in {report.data['wall_s']} s; JSON: {report.file}; not ok: {failed or 'none'}")
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
