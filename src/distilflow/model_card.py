"""The generated model card (the version's description in the MLflow UI) and its lineage section."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from distilflow.config import Params
from distilflow.dvc_files import lineage_order
from distilflow.numerics import readable_number
from distilflow.packaging import ServingChoice
from distilflow.paths import Paths
from distilflow.serving import ServingConfig
from distilflow.tasks import GlueTask
from distilflow.tracking import dvc_lock_data_hash


def run_link(client: Any, run_id: str) -> str:
    """A markdown link the MLflow UI follows (its pages are hash routes), or plain text if the run is not here."""
    try:
        run = client.get_run(run_id)
    except Exception:
        return f"`{run_id}` (not in this tracking store)"
    return f"[{run.info.run_name or run_id}](#/experiments/{run.info.experiment_id}/runs/{run_id})"


def model_card(
    task: GlueTask,
    role: str,
    metrics: dict[str, Any],
    params: Params,
    paths: Paths,
    config: ServingConfig,
    choice: ServingChoice | None,
) -> str:
    primary = task.primary_metric
    validation = paths.metrics_file("validate")
    counts = json.loads(validation.read_text()) if validation.is_file() else {}
    rows = {key.removeprefix("rows_"): count for key, count in counts.items() if key.startswith("rows_")}
    row_text = ", ".join(f"{split} {count}" for split, count in rows.items()) or "see metrics/validate.json"
    table = "\n".join(
        f"| {key} | {readable_number(value)} |"
        for key, value in sorted(metrics.items())
        if isinstance(value, int | float) and not isinstance(value, bool)
    )
    columns = " and ".join(f"`{name}`" for name in task.fields)
    if task.is_pair:
        request = json.dumps(
            {
                "dataframe_records": [
                    {task.fields[0]: "A man is playing a guitar.", task.fields[1]: "A person plays an instrument."}
                ]
            }
        )
    else:
        request = json.dumps({"inputs": ["a gripping , beautifully acted film ."]})
    output = "`score` (0..5)" if task.is_regression else "`label` and `score` (softmax confidence)"
    serving = "fp32 torch"
    if choice and choice.export_file is not None:
        megabytes = choice.export_file.stat().st_size / 1e6
        serving = f"{choice.export} export ({choice.backend}, {megabytes:.2f} MB file)"
    speed = ""
    if choice and choice.latency_p50_ms:
        speed = "; predict p50 at registration: " + ", ".join(
            f"{'fp32' if name == 'none' else name} {ms:.2f} ms" for name, ms in sorted(choice.latency_p50_ms.items())
        )
    return f"""# distilflow {task.name} {role}

**Task**: GLUE {task.name} ({task.kind}); output {output}{"; labels " + ", ".join(task.labels) if task.labels else ""}.

## Data
- source `{params.data.source}`{f" ({params.data.path})" if params.data.path else ""}; rows: {row_text}
- DVC md5 of data/raw: `{dvc_lock_data_hash(paths.root)}`

## Metrics (dev)
- **{primary}: {metrics.get(primary, float("nan")):.4f}**
- size: {readable_number(metrics.get("parameters", "?"))} parameters, \
{readable_number(metrics.get("size_mb", "?"))} MB of weights
- latency (batch 1, forward pass, CPU): p50 {readable_number(metrics.get("latency_p50_ms", "?"))} ms, \
p95 {readable_number(metrics.get("latency_p95_ms", "?"))} ms
- served as: {serving}{speed}

| metric | value |
|---|---|
{table}

## Input
Raw text, columns {columns}{" (or `sentence1`/`sentence2`)" if config.aliases else ""}, at most {config.max_rows} rows
per request. Texts longer than {config.max_length} tokens (or {config.max_chars} characters) are truncated, and
the response says so in `truncated`. Example request to `mlflow models serve`:

    curl -s http://127.0.0.1:{params.register_.serving.port}/invocations -H 'Content-Type: application/json' \\
         -d '{request}'

## Limits
- Trained on GLUE {task.name} only ({params.data.source} data); English, lower-cased WordPiece vocabulary.
- Scores are uncalibrated; see the evaluate stage's reliability diagram before thresholding them.
- Dev-set metrics; the GLUE test labels are not public, so no test score is claimed.
"""


def lineage_section(client: Any, lineage: dict[str, str], root: Path) -> str:
    """Stage runs in pipeline order (stages the order does not know yet follow by name)."""
    order = {stage: index for index, stage in enumerate(lineage_order(root))}
    stages = sorted(lineage, key=lambda stage: (order.get(stage, len(order)), stage))
    lines = ["", "## Lineage", "The MLflow run of every stage that produced this model:", ""]
    lines += [f"- {stage}: {run_link(client, lineage[stage])}" for stage in stages]
    return "\n".join(lines) + "\n"


GATE_SECTION_START = "\n## Promotion gate\n"


def gate_section(decision: dict[str, Any]) -> str:
    """The promotion gate's decision for the card: every reason, and the paired bootstrap behind the comparisons."""
    lines = ["", "## Promotion gate", f"**{'passed' if decision['promote'] else 'refused'}**", ""]
    lines += [f"- {reason}" for reason in decision["reasons"]]
    bootstrap = decision.get("bootstrap") or {}
    if bootstrap:
        lines += [
            "",
            "Paired bootstrap over the dev examples (candidate − other, on the served artifact's predictions):",
            "",
            "| against | difference | interval | P(candidate better) | resamples × examples |",
            "|---|---|---|---|---|",
        ]
        for label, result in bootstrap.items():
            lines.append(
                f"| {label} | {result['difference']:+.4f} | {result['confidence']:.0%}: [{result['low']:+.4f}, "
                f"{result['high']:+.4f}] | {result['p_better']:.3f} | {result['resamples']} × {result['examples']} |"
            )
    return "\n".join(lines) + "\n"
