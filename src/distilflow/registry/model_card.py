"""The generated model card (the version's description in the MLflow UI) and its lineage section."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from distilflow.config.params import Params
from distilflow.numerics import readable_number
from distilflow.paths import Paths
from distilflow.registry.packaging import ServingChoice
from distilflow.runtime.dvc_files import lineage_order
from distilflow.serving.classifier import ServingConfig
from distilflow.tasks import GlueTask
from distilflow.tracking.runs import dvc_lock_data_hash, read_lineage
from distilflow.tracking.tags import ui_query


def model_stage_runs(paths: Paths, role: str) -> dict[str, str]:
    """{stage: MLflow run id} of every stage behind a role's evaluated model, from the lineage files DVC keeps.

    The student's chain (through distill) reaches back through the transfer set (augment) and pretrain when it ran;
    evaluate@teacher is the teacher's score that the register stage compares the student with.
    """
    evaluated = ["evaluate_teacher", "evaluate_student"] if role == "student" else ["evaluate_teacher"]
    return read_lineage(paths, *evaluated)


PRETRAIN_OFF = "off in params.yaml (pretrain.enabled: false), so no MLflow run"


def stages_off(lineage: dict[str, str]) -> dict[str, str]:
    """Stages of a model's chain that made no MLflow run because the settings switch them off, with the reason.

    pretrain always runs before distill but starts an MLflow run only when enabled: a distilled model whose chain
    has no pretrain run was distilled from a student that was not pre-trained.
    """
    return {"pretrain": PRETRAIN_OFF} if "distill" in lineage and "pretrain" not in lineage else {}


def experiment_query(client: Any, experiment_id: str, cache: dict[str, str] | None = None) -> str:
    """The URL query that opens the experiment's pages in the view of its kind (mlflow_tags.ui_query)."""
    if cache is not None and experiment_id in cache:
        return cache[experiment_id]
    try:
        query = ui_query(dict(client.get_experiment(experiment_id).tags))
    except Exception:  # an unreadable experiment only costs the link its view
        query = ""
    if cache is not None:
        cache[experiment_id] = query
    return query


def run_link(client: Any, run_id: str, cache: dict[str, str] | None = None) -> str:
    """A markdown link the MLflow UI follows (its pages are hash routes), or plain text if the run is not here."""
    try:
        run = client.get_run(run_id)
    except Exception:
        return f"`{run_id}` (not in this tracking store)"
    experiment = run.info.experiment_id
    query = experiment_query(client, experiment, cache)
    return f"[{run.info.run_name or run_id}](#/experiments/{experiment}/runs/{run_id}{query})"


# In backticks: MLflow's Markdown renderer turns a bare @name into a GitHub mention link.
ALIASES_TEXT = (
    "`@champion` is the version `make serve` serves, moved only by the promotion gate or a person "
    "(`distilflow promote`, `distilflow rollback`). `@challenger` is the newest student version the gate judged. "
    "A version holding both is the newest one and it passed the gate: it is served."
)


def model_description(name: str, task: GlueTask, role: str, port: int) -> str:
    """The registered model's own description: what it is, what each alias means, how to serve it."""
    if role == "teacher":
        what = (
            f"The fine-tuned BERT teacher for GLUE {task.name}, kept for comparison and for distillation; never served."
        )
        return f"{what} Each version's description is its model card; its source run is the register run."
    return (
        f"The distilled BERT-tiny student for GLUE {task.name}: one version per distinct set of weights. "
        f"{ALIASES_TEXT} Serve it with `make serve` or `mlflow models serve -m models:/{name}@champion "
        f"--env-manager local -p {port}`. Each version's description is its model card (metrics, input, gate, "
        "lineage)."
    )


def summary_line(task: GlueTask, role: str, metrics: dict[str, Any], serving: str) -> str:
    """The card's first line: all the MLflow UI shows in the versions list's Description column, as plain text
    (that column does not render Markdown)."""
    primary = task.primary_metric
    what = "Distilled student" if role == "student" else "Fine-tuned teacher"
    return (
        f"{what}, GLUE {task.name}: {primary} {metrics.get(primary, float('nan')):.4f} on dev, "
        f"p95 {readable_number(metrics.get('latency_p95_ms', '?'))} ms, served as {serving}."
    )


def serving_text(choice: ServingChoice | None) -> tuple[str, str]:
    """(what is served, the timings behind the choice)."""
    serving = "fp32 torch"
    if choice and choice.export_file is not None:
        megabytes = choice.export_file.stat().st_size / 1e6
        serving = f"{choice.export} export ({choice.backend}, {megabytes:.2f} MB file)"
    speed = ""
    if choice and choice.latency_p50_ms:
        speed = "; predict p50 at registration: " + ", ".join(
            f"{'fp32' if name == 'none' else name} {ms:.2f} ms" for name, ms in sorted(choice.latency_p50_ms.items())
        )
    return serving, speed


def request_example(task: GlueTask) -> str:
    if task.is_pair:
        first, second = task.fields[0], task.fields[1]
        record = {first: "A man is playing a guitar.", second: "A person plays an instrument."}
        return json.dumps({"dataframe_records": [record]})
    return json.dumps({"inputs": ["a gripping , beautifully acted film ."]})


def model_card(
    task: GlueTask,
    role: str,
    metrics: dict[str, Any],
    params: Params,
    paths: Paths,
    config: ServingConfig,
    choice: ServingChoice | None,
) -> str:
    # MLflow's UI renders a newline inside a paragraph as a line break and tables without borders: so one line
    # per paragraph, and lists where a table would be.
    output = "`score` (0..5)" if task.is_regression else "`label` and `score` (softmax confidence)"
    serving, speed = serving_text(choice)
    aliases = f"\n## Aliases\n{ALIASES_TEXT}\n" if role == "student" else ""
    return f"""{summary_line(task, role, metrics, serving.split(" (")[0])}

# distilflow {task.name} {role}

**Task**: GLUE {task.name} ({task.kind}); output {output}{"; labels " + ", ".join(task.labels) if task.labels else ""}.
{aliases}
{_data_section(params, paths)}

{_metrics_section(task, metrics, serving + speed)}

{_input_section(task, config, params.register_.serving.port)}

## Limits
- Trained on GLUE {task.name} only ({params.data.source} data); English, lower-cased WordPiece vocabulary.
- Scores are uncalibrated; see the evaluate stage's reliability diagram before thresholding them.
- Dev-set metrics; the GLUE test labels are not public, so no test score is claimed.
"""


def _data_section(params: Params, paths: Paths) -> str:
    """Where the data came from, its rows per split (the validate stage's counts) and its DVC hash."""
    validation = paths.metrics_file("validate")
    counts = json.loads(validation.read_text()) if validation.is_file() else {}
    rows = {key.removeprefix("rows_"): count for key, count in counts.items() if key.startswith("rows_")}
    row_text = ", ".join(f"{split} {count}" for split, count in rows.items()) or "see metrics/validate.json"
    return f"""## Data
- source `{params.data.source}`{f" ({params.data.path})" if params.data.path else ""}; rows: {row_text}
- DVC md5 of data/raw: `{dvc_lock_data_hash(paths.root)}`"""


def _metrics_section(task: GlueTask, metrics: dict[str, Any], served_as: str) -> str:
    """The headline metric, size and latency, how it is served, then every number the evaluate stage recorded."""
    primary = task.primary_metric
    listing = "\n".join(
        f"- {key}: {readable_number(value)}"
        for key, value in sorted(metrics.items())
        if isinstance(value, int | float) and not isinstance(value, bool)
    )
    return f"""## Metrics (dev)
- **{primary}: {metrics.get(primary, float("nan")):.4f}**
- size: {readable_number(metrics.get("parameters", "?"))} parameters, \
{readable_number(metrics.get("size_mb", "?"))} MB of weights
- latency (batch 1, forward pass, CPU): p50 {readable_number(metrics.get("latency_p50_ms", "?"))} ms, \
p95 {readable_number(metrics.get("latency_p95_ms", "?"))} ms
- served as: {served_as}

Every metric the evaluate stage recorded:

{listing}"""


def _input_section(task: GlueTask, config: ServingConfig, port: int) -> str:
    """What a request carries, the serving limits, and an example request."""
    columns = " and ".join(f"`{name}`" for name in task.fields)
    return f"""## Input
Raw text, columns {columns}{" (or `sentence1`/`sentence2`)" if config.aliases else ""}, at most {config.max_rows} \
rows per request. Texts longer than {config.max_length} tokens (or {config.max_chars} characters) are truncated, \
and the response says so in `truncated`. Example request to `mlflow models serve`:

    curl -s http://127.0.0.1:{port}/invocations -H 'Content-Type: application/json' \\
         -d '{request_example(task)}'"""


def lineage_section(client: Any, lineage: dict[str, str], root: Path) -> str:
    """Every stage behind the model in pipeline order (stages the order does not know follow by name), with its
    MLflow run, or why it has none (a stage switched off in params.yaml)."""
    order = {stage: index for index, stage in enumerate(lineage_order(root))}
    entries: dict[str, str] = {stage: f"not run: {why}" for stage, why in stages_off(lineage).items()}
    cache: dict[str, str] = {}
    entries.update({stage: run_link(client, run_id, cache) for stage, run_id in lineage.items()})
    stages = sorted(entries, key=lambda stage: (order.get(stage, len(order)), stage))
    lines = ["", "## Lineage", "The MLflow run of every stage that produced this model, in pipeline order:", ""]
    lines += [
        f"- {stage.replace('_', '@', 1) if stage.startswith('evaluate_') else stage}: {entries[stage]}"
        for stage in stages
    ]
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
        ]
        for label, result in bootstrap.items():
            lines.append(
                f"- against {label}: difference {result['difference']:+.4f}, {result['confidence']:.0%} interval "
                f"[{result['low']:+.4f}, {result['high']:+.4f}], P(candidate better) {result['p_better']:.3f} "
                f"({result['resamples']} resamples × {result['examples']} examples)"
            )
    return "\n".join(lines) + "\n"
