"""The teacher-vs-student comparison: one table of quality, size, latency and throughput, with published results.

The report stage (distilflow.stages.report) feeds this module the two models' dev evaluations and a speed
measurement of both taken back to back in one process; this module turns them into ``metrics/eval.json``'s
content, the markdown table (``reports/comparison.md``, also published as a Prefect artifact by the flow) and
the comparison figure's panels. It does no I/O of its own.
"""

from __future__ import annotations

import math
import platform
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from distilflow.evaluation.markdown import markdown_table
from distilflow.evaluation.references import Reference, references_for
from distilflow.tasks import GlueTask

ROLES = ("teacher", "student")
SPEED_KEYS = ("latency_p50_ms", "latency_p95_ms")
SIZE_KEYS = ("parameters", "size_mb")
EXTRA_QUALITY = ("ece", "mse", "mae")
"""Lower-is-better diagnostics the evaluate stage adds next to GLUE's metrics."""


def throughput_key(batch_size: int) -> str:
    return f"throughput_b{batch_size}_per_s"


def quality_columns(task: GlueTask) -> list[tuple[str, str]]:
    """(key in eval_<m>.json, column heading) for the task's GLUE metrics, headline first.

    MNLI is reported on both dev sets, as GLUE does; its plain keys duplicate dev_matched and are not repeated.
    """
    if len(task.dev_splits) > 1:
        return [
            (f"{split}_{metric}", f"{metric} ({split.removeprefix('dev_')})")
            for metric in task.metrics
            for split in task.dev_splits
        ]
    ordered = [task.primary_metric, *(m for m in task.metrics if m != task.primary_metric)]
    return [(metric, metric) for metric in ordered]


def _ratio(numerator: float, denominator: float) -> float | None:
    if denominator == 0 or not math.isfinite(numerator) or not math.isfinite(denominator):
        return None
    return numerator / denominator


def build_comparison(
    task: GlueTask,
    evaluations: Mapping[str, Mapping[str, float]],
    speed: Mapping[str, Mapping[str, float]],
    batch_size: int,
) -> dict[str, dict[str, float]]:
    """``metrics/eval.json``: {teacher: {...}, student: {...}, ratios: {...}}, numbers only.

    Quality and size come from each model's evaluate stage; speed from the same-run measurement in ``speed``
    (which replaces the per-stage timings, taken in separate processes at different times). Ratios are oriented
    so that > 1 favours the student for size and speed; ``quality_retained`` is student / teacher on the
    primary metric (left out when the teacher's is 0, where it is undefined).
    """
    throughput = throughput_key(batch_size)
    quality = [key for key, _ in quality_columns(task)]
    if task.primary_metric not in quality:
        quality.append(task.primary_metric)
    out: dict[str, dict[str, float]] = {}
    for role in ROLES:
        evaluation = evaluations[role]
        missing = [key for key in (*quality, *SIZE_KEYS) if key not in evaluation]
        if missing:
            raise KeyError(f"metrics/eval_{role}.json lacks {missing}; rerun `dvc repro evaluate@{role}`")
        row = {key: float(evaluation[key]) for key in quality}
        row.update({key: float(evaluation[key]) for key in EXTRA_QUALITY if key in evaluation})
        row.update({key: float(evaluation[key]) for key in SIZE_KEYS})
        row.update({key: float(speed[role][key]) for key in (*SPEED_KEYS, throughput)})
        out[role] = row
    teacher, student = out["teacher"], out["student"]
    ratios: dict[str, float | None] = {
        "quality_retained": _ratio(student[task.primary_metric], teacher[task.primary_metric]),
        "quality_delta": student[task.primary_metric] - teacher[task.primary_metric],
        "parameters_smaller_x": _ratio(teacher["parameters"], student["parameters"]),
        "size_smaller_x": _ratio(teacher["size_mb"], student["size_mb"]),
        "latency_p50_speedup_x": _ratio(teacher["latency_p50_ms"], student["latency_p50_ms"]),
        "latency_p95_speedup_x": _ratio(teacher["latency_p95_ms"], student["latency_p95_ms"]),
        "throughput_speedup_x": _ratio(student[throughput], teacher[throughput]),
    }
    out["ratios"] = {key: value for key, value in ratios.items() if value is not None}
    return out


def _cell(value: float | None, scale: float = 1.0, digits: int = 1) -> str:
    if value is None or not math.isfinite(value):
        return "–"
    return f"{value * scale:,.{digits}f}"


def _times(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}×"


def comparison_rows(
    task: GlueTask, comparison: Mapping[str, Mapping[str, float]], batch_size: int, references: Sequence[Reference]
) -> tuple[list[str], list[list[str]]]:
    """The report's one table: header and rows (this run's two models, the ratio, then published results).

    Quality is shown x 100, the way GLUE and the papers print it, so the published rows line up.
    """
    columns = quality_columns(task)
    header = [
        "model",
        "split",
        *(label for _, label in columns),
        "params (M)",
        "size (MB)",
        "p50 latency (ms)",
        "p95 latency (ms)",
        f"throughput (ex/s, batch {batch_size})",
    ]
    rows = [_run_row(role, comparison[role], columns, throughput_key(batch_size)) for role in ROLES]
    rows.append(_ratio_row(comparison, columns))
    rows += [_published_row(reference, task, columns) for reference in references]
    return header, rows


def _run_row(role: str, values: Mapping[str, float], columns: list[tuple[str, str]], throughput: str) -> list[str]:
    """One of this run's models: quality x 100, size, latency and throughput."""
    return [
        f"**{role}** (this run)",
        "dev",
        *(_cell(values.get(key), 100) for key, _ in columns),
        _cell(values["parameters"], 1e-6, 2),
        _cell(values["size_mb"]),
        _cell(values["latency_p50_ms"], digits=2),
        _cell(values["latency_p95_ms"], digits=2),
        _cell(values[throughput], digits=0),
    ]


def _ratio_row(comparison: Mapping[str, Mapping[str, float]], columns: list[tuple[str, str]]) -> list[str]:
    """Student ÷ teacher: quality as a percentage, the rest as a factor."""
    teacher, student = comparison["teacher"], comparison["student"]
    return [
        "student ÷ teacher",
        "dev",
        *(_percent(_ratio(student.get(key, math.nan), teacher.get(key, math.nan))) for key, _ in columns),
        _times(_ratio(student["parameters"], teacher["parameters"])),
        _times(_ratio(student["size_mb"], teacher["size_mb"])),
        _times(_ratio(student["latency_p50_ms"], teacher["latency_p50_ms"])),
        _times(_ratio(student["latency_p95_ms"], teacher["latency_p95_ms"])),
        _times(comparison["ratios"].get("throughput_speedup_x")),
    ]


def _published_row(reference: Reference, task: GlueTask, columns: list[tuple[str, str]]) -> list[str]:
    """A published model: its scores (already x 100) and size; papers report no latency comparable to ours."""
    scores = reference.scores.get(task.name, {})
    return [
        f"{reference.model} (published)",
        reference.split,
        *(_cell(scores.get(key)) for key, _ in columns),
        _cell(reference.parameters_millions, digits=1),
        "–",
        "–",
        "–",
        "–",
    ]


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def render_markdown(
    task: GlueTask,
    comparison: Mapping[str, Mapping[str, float]],
    batch_size: int,
    conditions: Mapping[str, Any],
    dev_examples: int,
) -> str:
    references = references_for(task.name)
    header, rows = comparison_rows(task, comparison, batch_size, references)
    teacher, student = comparison["teacher"], comparison["student"]
    ratios = comparison["ratios"]
    primary = task.primary_metric
    retained = ratios.get("quality_retained")
    summary = (
        f"The student scores {student[primary]:.4f} {primary} on dev against the teacher's {teacher[primary]:.4f}"
        + (f" ({retained:.1%} retained)" if retained is not None else "")
        + f", with {_times(ratios.get('parameters_smaller_x'))} fewer parameters, "
        f"{_times(ratios.get('latency_p50_speedup_x'))} lower median batch-1 latency and "
        f"{_times(ratios.get('throughput_speedup_x'))} the batch-{batch_size} throughput."
    )
    sources = sorted({reference.source for reference in references})
    extra = [key for key in EXTRA_QUALITY if key in teacher]
    diagnostics = "; ".join(f"{key}: teacher {teacher[key]:.4f}, student {student[key]:.4f}" for key in extra)
    return "\n".join(
        [
            f"# distilflow {task.name}: teacher vs student",
            "",
            summary,
            "",
            markdown_table(header, rows),
            "",
            f"- Quality: GLUE metrics x 100 on this run's dev set ({dev_examples} examples); `metrics/eval.json` has "
            "the unrounded values. Published rows are other people's models: test rows come from the GLUE server, "
            "dev rows from the authors' runs; only dev rows are like for like with this run.",
            *([f"- Diagnostics (lower is better): {diagnostics}."] if diagnostics else []),
            f"- Speed: forward pass only (tokenization excluded), CPU, {conditions['threads']} torch thread(s), "
            f"torch {conditions['torch']}, {conditions['machine']}; both models timed in one process, taking turns "
            f"request by request, over {conditions['latency_examples']} batch-1 requests and "
            f"{conditions['throughput_batches']} batch(es) of {batch_size}. Absolute times vary between machines and "
            "with load; the ratios are the comparable part.",
            "- Size: parameters counted in the loaded model; MB is the safetensors weights on disk (10^6 bytes).",
            *(f"- Source: {source}." for source in sources),
            "",
        ]
    )


def cpu_name() -> str:
    """The CPU model, which platform.processor() leaves empty on Linux."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def measurement_conditions(latency_examples: int, throughput_batches: int) -> dict[str, Any]:
    return {
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": f"{platform.machine()} {platform.system()}, {cpu_name()}",
        "latency_examples": latency_examples,
        "throughput_batches": throughput_batches,
    }


def figure_panels(
    task: GlueTask, comparison: Mapping[str, Mapping[str, float]], batch_size: int
) -> list[tuple[str, float, float]]:
    teacher, student = comparison["teacher"], comparison["student"]
    throughput = throughput_key(batch_size)
    return [
        (f"dev {task.primary_metric}", teacher[task.primary_metric], student[task.primary_metric]),
        ("parameters (M)", teacher["parameters"] / 1e6, student["parameters"] / 1e6),
        ("weights on disk (MB)", teacher["size_mb"], student["size_mb"]),
        ("p50 latency, batch 1 (ms)", teacher["latency_p50_ms"], student["latency_p50_ms"]),
        ("p95 latency, batch 1 (ms)", teacher["latency_p95_ms"], student["latency_p95_ms"]),
        (f"throughput, batch {batch_size} (ex/s)", teacher[throughput], student[throughput]),
    ]


def flat_metrics(comparison: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """``teacher_accuracy``, ``ratios_size_smaller_x``, ...: the form MLflow metrics take."""
    return {f"{group}_{key}": value for group, values in comparison.items() for key, value in values.items()}
