"""register: log teacher and student as MLflow models that take raw text, and gate the student's promotion.

Each model is an MLflow pyfunc (:class:`distilflow.serving.TextClassifier`) with an explicit signature, an input
example, the tokenizer and safetensors weights inside, and pinned pip requirements (MLflow's own guess imports
torchvision and fails). The student may be served from one of its exports (``models/student/export``, written by
the distill stage): ``register.serving.export`` picks one, or ``auto`` picks the fastest that passed its agreement
check, timed here through the real request path.

Each version is tagged with the git commit, the DVC md5 of the data, the params hash and the MLflow run of every
stage that produced it; its description is a generated model card whose lineage section links to those runs.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from distilflow.config import Params
from distilflow.dvc_files import lineage_order
from distilflow.paths import Paths
from distilflow.registry import (
    CHALLENGER,
    DATA_TAG,
    LATENCY_TAG,
    METRIC_NAME_TAG,
    METRIC_TAG,
    gate_version,
    model_name,
    promote,
    record_decision,
)
from distilflow.serving import MODEL_ARTIFACT, Backend, ServingConfig, TextClassifier, pair_aliases
from distilflow.tasks import GlueTask, get_task
from distilflow.tracking import (
    LINEAGE_FILE,
    dvc_directory_md5,
    dvc_lock_data_hash,
    git_commit,
    params_hash,
    read_lineage,
    stage_run,
    write_json,
)

SECTIONS = ("register",)
EXPORT_DIR = "export"
# Export format (distilflow.export's layout under models/student/export) → serving backend and weights file.
EXPORTS: dict[str, tuple[Backend, str]] = {
    "int8": ("torch-int8", "int8/model.pt"),
    "onnx": ("onnx", "onnx/model.onnx"),
    "onnx-int8": ("onnx", "onnx-int8/model.onnx"),
}
TIMING_ROUNDS = 60
MODEL_HASH_TAG = "distilflow.model_md5"


def pip_requirements(backend: Backend) -> list[str]:
    """Exact versions of what the pyfunc imports; local version suffixes (+cpu) dropped so pip can resolve them."""
    packages = ["mlflow", "cloudpickle", "numpy", "pandas", "tokenizers", "safetensors", "torch", "transformers"]
    if backend == "onnx":
        packages.append("onnxruntime")
    pins = []
    for package in packages:
        try:
            pins.append(f"{package}=={package_version(package).split('+')[0]}")
        except PackageNotFoundError:
            pins.append(package)
    return pins


def example_input(task: GlueTask) -> pd.DataFrame:
    if task.is_pair:
        return pd.DataFrame(
            {
                task.fields[0]: ["A man is playing a guitar.", "A man is playing a guitar."],
                task.fields[1]: ["A person plays an instrument.", "Nobody is making music."],
            }
        )
    return pd.DataFrame({task.fields[0]: ["a gripping , beautifully acted film .", "a tedious mess ."]})


def signature(task: GlueTask) -> Any:
    """Unnamed input columns of type Any, one per text field.

    Unnamed, so a bare list of strings (or of pairs) works in process and over HTTP, and the model checks the
    column names itself (the task's own, or sentence1/sentence2 for pairs) with a clear message. Any, because
    for a string column MLflow's server casts JSON values to str before the model sees them (null becomes
    "None", 5 becomes "5"); the model rejects anything but non-empty strings instead.
    """
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema, TensorSpec
    from mlflow.types.schema import AnyType

    outputs: list[ColSpec | TensorSpec] = [ColSpec("double", "score"), ColSpec("boolean", "truncated")]
    if not task.is_regression:
        outputs.insert(0, ColSpec("string", "label"))
    inputs: list[ColSpec | TensorSpec] = [ColSpec(AnyType()) for _ in task.fields]
    return ModelSignature(inputs=Schema(inputs), outputs=Schema(outputs))


def serving_config(
    task: GlueTask, params: Params, backend: Backend = "torch", weights_file: str | None = None, export: str = "none"
) -> ServingConfig:
    settings = params.register_.serving
    return ServingConfig(
        task=task.name,
        fields=task.fields,
        labels=task.labels,
        max_length=params.tokenize.max_length,
        max_rows=settings.max_rows,
        max_chars=settings.max_chars,
        backend=backend,
        weights_file=weights_file,
        export=export,
        threads=settings.threads,
        score_range=task.score_range,
        aliases=pair_aliases(task.fields),
    )


def package(source: Path, config: ServingConfig, target: Path, export_file: Path | None = None) -> Path:
    """The folder logged as the model's artifact: tokenizer, config, safetensors weights, serving config."""
    target.mkdir(parents=True, exist_ok=True)
    for file in source.iterdir():
        if file.is_file() and file.name != "lineage.json":
            shutil.copy2(file, target / file.name)
    if export_file is not None:
        assert config.weights_file is not None
        (target / config.weights_file).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(export_file, target / config.weights_file)
    config.write(target)
    return target


@dataclass
class ServingChoice:
    export: str = "none"
    backend: Backend = "torch"
    export_file: Path | None = None
    reasons: list[str] = field(default_factory=list)
    latency_p50_ms: dict[str, float] = field(default_factory=dict)

    @property
    def weights_file(self) -> str | None:
        return EXPORTS[self.export][1] if self.export in EXPORTS else None


def agreeing_exports(export_dir: Path, reasons: list[str]) -> list[str]:
    """Exports whose files exist and whose agreement check (summary.json) passed, in EXPORTS order."""
    summary_file = export_dir / "summary.json"
    if not summary_file.is_file():
        reasons.append(f"no export summary at {summary_file}")
        return []
    summary = json.loads(summary_file.read_text())
    usable = []
    for name, (_, relative) in EXPORTS.items():
        entry = summary.get(name)
        if entry is None:
            continue
        if entry.get("agrees") is not True:
            reasons.append(
                f"{name}: failed its agreement check ({entry.get('metric', 'metric')} "
                f"{entry.get('accuracy')} vs fp32 {entry.get('fp32_accuracy')})"
            )
        elif not (export_dir / relative).is_file():
            reasons.append(f"{name}: summary says it agrees but {export_dir / relative} is missing")
        else:
            usable.append(name)
    return usable


def time_predict(models: dict[str, TextClassifier], example: pd.DataFrame) -> dict[str, float]:
    """Median batch-1 latency of the full predict path, candidates interleaved so machine noise hits all alike."""
    single = example.iloc[:1]
    timings: dict[str, list[float]] = {name: [] for name in models}
    for model in models.values():
        for _ in range(5):
            model.outputs(single)
    for _ in range(TIMING_ROUNDS):
        for name, model in models.items():
            start = time.perf_counter()
            model.outputs(single)
            timings[name].append((time.perf_counter() - start) * 1000)
    return {name: float(np.median(values)) for name, values in timings.items()}


def choose_serving(params: Params, paths: Paths, task: GlueTask, workdir: Path) -> ServingChoice:
    """Which form of the student to serve: the setting, or for ``auto`` the fastest agreeing one (fp32 included)."""
    setting = params.register_.serving.export
    choice = ServingChoice()
    if setting == "none":
        choice.reasons.append("register.serving.export is none: serving the fp32 torch model")
        return choice
    usable = agreeing_exports(paths.student_dir / EXPORT_DIR, choice.reasons)
    candidates = usable if setting == "auto" else [name for name in usable if name == setting]
    if setting != "auto" and not candidates:
        choice.reasons.append(f"register.serving.export is {setting} but it is not usable: serving fp32 torch")
        return choice
    example = example_input(task)
    models: dict[str, TextClassifier] = {
        "none": TextClassifier.from_folder(
            package(paths.student_dir, serving_config(task, params), workdir / "candidate-none"), apply_threads=True
        )
    }
    reference = models["none"].outputs(example)
    for name in candidates:
        backend, relative = EXPORTS[name]
        folder = package(
            paths.student_dir,
            serving_config(task, params, backend, relative, name),
            workdir / f"candidate-{name}",
            paths.student_dir / EXPORT_DIR / relative,
        )
        try:
            model = TextClassifier.from_folder(folder, apply_threads=True)
            output = model.outputs(example)
        except Exception as error:  # a broken export must not stop registration; fp32 is always there
            choice.reasons.append(f"{name}: could not be served ({type(error).__name__}: {error})")
            continue
        # The agreement check scored the export on dev; this catches wiring mistakes (input order, names).
        same = (
            np.allclose(output["score"], reference["score"], atol=0.25)
            if task.is_regression
            else list(output["label"]) == list(reference["label"])
        )
        if not same:
            choice.reasons.append(f"{name}: predicts differently from fp32 on the input example; not served")
            continue
        models[name] = model
    choice.latency_p50_ms = time_predict(models, example) if len(models) > 1 else {}
    if setting == "auto":
        best = min(choice.latency_p50_ms, key=choice.latency_p50_ms.__getitem__) if choice.latency_p50_ms else "none"
        if choice.latency_p50_ms:
            timings = ", ".join(f"{name} {ms:.2f} ms" for name, ms in sorted(choice.latency_p50_ms.items()))
            choice.reasons.append(f"auto: fastest batch-1 predict p50 of {timings}")
    else:
        best = setting if setting in models else "none"
    choice.export = best
    if best != "none":
        choice.backend, _ = EXPORTS[best]
        choice.export_file = paths.student_dir / EXPORT_DIR / EXPORTS[best][1]
    choice.reasons.append(f"serving {'fp32 torch' if best == 'none' else best} ({choice.backend})")
    return choice


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


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
        f"| {key} | {_fmt(value)} |"
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
- size: {_fmt(metrics.get("parameters", "?"))} parameters, {_fmt(metrics.get("size_mb", "?"))} MB of weights
- latency (batch 1, forward pass, CPU): p50 {_fmt(metrics.get("latency_p50_ms", "?"))} ms, \
p95 {_fmt(metrics.get("latency_p95_ms", "?"))} ms
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
    """Stage runs in dvc.yaml's order (stages it does not know follow by name)."""
    order = {stage: index for index, stage in enumerate(lineage_order(root))}
    stages = sorted(lineage, key=lambda stage: (order.get(stage, len(order)), stage))
    lines = ["", "## Lineage", "The MLflow run of every stage that produced this model:", ""]
    lines += [f"- {stage}: {run_link(client, lineage[stage])}" for stage in stages]
    return "\n".join(lines) + "\n"


def model_hash(folder: Path) -> str:
    """DVC's md5 of the model folder without lineage.json: it names MLflow runs, not weights."""
    return dvc_directory_md5(folder, exclude=frozenset({LINEAGE_FILE}))


def registered_version(client: Any, name: str, model_md5: str) -> Any | None:
    """The newest version of NAME built from these exact files, or None (so a rerun does not register a copy)."""
    from mlflow.exceptions import MlflowException

    try:
        versions = client.search_model_versions(f"name = '{name}'")
    except MlflowException:
        return None
    matches = [version for version in versions if version.tags.get(MODEL_HASH_TAG) == model_md5]
    return max(matches, key=lambda version: int(version.version)) if matches else None


def log_and_register(
    role: str,
    folder: Path,
    params: Params,
    paths: Paths,
    task: GlueTask,
    metrics: dict[str, Any],
    lineage: dict[str, str],
    choice: ServingChoice | None,
    workdir: Path,
) -> Any:
    import mlflow

    name = model_name(task.name, role)
    client = mlflow.MlflowClient()
    model_md5 = model_hash(folder)
    existing = registered_version(client, name, model_md5)
    if existing is not None:
        print(f"{name}: these weights are already registered as v{existing.version} (md5 {model_md5[:12]})")
        return existing
    backend: Backend = choice.backend if choice else "torch"
    config = serving_config(
        task, params, backend, choice.weights_file if choice else None, choice.export if choice else "none"
    )
    # The folder's name is what the logged model shows under artifacts/: keep it "model", one folder per role.
    packaged = package(folder, config, workdir / role / MODEL_ARTIFACT, choice.export_file if choice else None)
    info = mlflow.pyfunc.log_model(
        name=role,
        python_model=TextClassifier(),
        artifacts={MODEL_ARTIFACT: str(packaged)},
        signature=signature(task),
        input_example=example_input(task),
        pip_requirements=pip_requirements(backend),
        code_paths=[str(Path(__file__).resolve().parents[1])],
    )
    card = model_card(task, role, metrics, params, paths, config, choice)
    mlflow.log_text(card, f"{role}_model_card.md")
    tags = {
        "git_commit": git_commit(paths.root),
        DATA_TAG: dvc_lock_data_hash(paths.root),
        "params_hash": params_hash(params),
        "distilflow.task": task.name,
        "distilflow.role": role,
        METRIC_NAME_TAG: task.primary_metric,
        METRIC_TAG: str(metrics.get(task.primary_metric, math.nan)),
        LATENCY_TAG: str(metrics.get("latency_p95_ms", math.nan)),
        "distilflow.serving_backend": backend,
        "distilflow.serving_export": config.export,
        MODEL_HASH_TAG: model_md5,
        **{f"lineage.{stage}": run_id for stage, run_id in lineage.items()},
    }
    # Tags go in with the version (one registry call, not one per tag), so it never exists without them.
    version = mlflow.register_model(info.model_uri, name, tags=tags)
    client.update_model_version(name, version.version, description=card + lineage_section(client, lineage, paths.root))
    return version


def run(params: Params, paths: Paths, write_outputs: bool = True) -> dict[str, Any]:
    """Register, gate, promote. ``write_outputs=False`` leaves metrics/ and reports/ (git-versioned) untouched."""
    import mlflow

    task = get_task(params.task)
    evaluations = {role: json.loads(paths.metrics_file(f"eval_{role}").read_text()) for role in ("teacher", "student")}
    settings = params.register_
    with stage_run("register", params, paths, SECTIONS) as tracked, tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        client = mlflow.MlflowClient()
        choice = choose_serving(params, paths, task, workdir)
        roles = ("teacher", "student") if settings.register_teacher else ("student",)
        versions, lineages = {}, {}
        for role in roles:
            lineages[role] = {**read_lineage(paths.reports_dir / f"eval_{role}"), "register": tracked.run_id}
            folder = paths.teacher_dir if role == "teacher" else paths.student_dir
            versions[role] = log_and_register(
                role,
                folder,
                params,
                paths,
                task,
                evaluations[role],
                lineages[role],
                choice if role == "student" else None,
                workdir,
            )
        # The register run's description (rendered as markdown in the MLflow UI) links each model's lineage.
        client.set_tag(
            tracked.run_id,
            "mlflow.note.content",
            "\n".join(
                f"## {model_name(task.name, role)} v{versions[role].version}\n"
                + lineage_section(client, lineages[role], paths.root)
                for role in roles
            ),
        )
        student_name = model_name(task.name, "student")
        student = versions["student"]
        client.set_registered_model_alias(student_name, CHALLENGER, student.version)
        decision = gate_version(client, student_name, student.version, settings.promotion)
        record_decision(client, student_name, student.version, decision)
        promoted = decision.promote and settings.promote
        if promoted:
            promote(client, student_name, student.version, how=f"gate in register run {tracked.run_id}")
        elif decision.promote:
            decision.reasons.append("register.promote is false: champion left where it was")
        metrics = evaluations["student"]
        summary = {
            "student_version": int(student.version),
            "promoted": int(promoted),
            f"student_{task.primary_metric}": metrics[task.primary_metric],
        }
        report = {
            "model": student_name,
            "version": str(student.version),
            **decision.as_dict(),
            "promoted": promoted,
            "serving": {
                "export": choice.export,
                "backend": choice.backend,
                "reasons": choice.reasons,
                "predict_p50_ms": choice.latency_p50_ms,
            },
            "run_id": tracked.run_id,
        }
        if write_outputs:
            write_json(paths.metrics_file("register"), summary)
            write_json(paths.reports_dir / "promotion.json", report)
        tracked.log_dict(report, "promotion.json")
        tracked.log_metrics(summary)
        print(
            ("PROMOTED " if promoted else "NOT PROMOTED ")
            + f"{student_name} v{student.version}: "
            + "; ".join(decision.reasons)
        )
        print("serving: " + "; ".join(choice.reasons))
    return {"metrics": summary, "decision": report}


def sync(params: Params, paths: Paths) -> dict[str, Any] | None:
    """Register the student in this clone's store if it does not hold it yet; None if it does.

    ``dvc pull`` restores models/ and the stage results without running the register stage, so a fresh clone's
    own MLflow store (mlruns.db) starts empty; this fills it without touching the git-versioned results.
    """
    import mlflow

    from distilflow.tracking import configure_mlflow

    if not (paths.student_dir.is_dir() and paths.metrics_file("eval_student").is_file()):
        raise FileNotFoundError(f"no student at {paths.student_dir} (run `dvc repro` or `dvc pull` first)")
    configure_mlflow(params, paths)
    name = model_name(params.task, "student")
    existing = registered_version(mlflow.MlflowClient(), name, model_hash(paths.student_dir))
    if existing is not None:
        print(f"{name}: this store already holds models/student as v{existing.version}")
        return None
    return run(params, paths, write_outputs=False)
