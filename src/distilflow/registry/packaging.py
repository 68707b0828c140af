"""How a student or teacher becomes an MLflow model that takes raw text: files, serving config, signature, export.

The student may be served from one of its exports (``models/student/export``, written by the distill stage):
``register.serving.export`` picks one, or ``auto`` picks the fastest eligible one, timed here through the real
request path. An export is eligible only if its per-example dev predictions, through that same path, agree with
the fp32 model's on at least ``register.serving.min_agreement`` of the dev rows
(:mod:`distilflow.registry.served_scoring`).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from distilflow.config.params import Params
from distilflow.paths import Paths
from distilflow.registry import served_scoring as dev_scoring
from distilflow.serving.classifier import Backend, ServingConfig, TextClassifier, pair_aliases
from distilflow.tasks import LABEL, GlueTask

EXPORT_DIR = "export"
# Export format (distilflow.export.student's layout under models/student/export) → serving backend and weights file.
EXPORTS: dict[str, tuple[Backend, str]] = {
    "int8": ("torch-int8", "int8/model.pt"),
    "onnx": ("onnx", "onnx/model.onnx"),
    "onnx-int8": ("onnx", "onnx-int8/model.onnx"),
}
TIMING_ROUNDS = 60
CHARS_PER_TOKEN = 32


def pip_requirements(backend: Backend) -> list[str]:
    """Exact versions of what the pyfunc imports; local version suffixes (+cpu) dropped so pip can resolve them."""
    packages = ["mlflow", "numpy", "pandas", "tokenizers", "safetensors", "torch", "transformers"]
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
        max_chars=settings.max_chars or CHARS_PER_TOKEN * params.tokenize.max_length,
        backend=backend,
        weights_file=weights_file,
        export=export,
        threads=settings.threads,
        score_range=task.score_range,
        aliases=pair_aliases(task.fields),
        max_body_bytes=settings.max_body_bytes,
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
    agreement: dict[str, float] = field(default_factory=dict)
    """Share of dev examples on which each candidate form answers as fp32 does (through the serving path)."""
    dev_metric: dict[str, float] = field(default_factory=dict)
    """Each candidate form's own primary metric on the dev set, scored by the register stage."""
    predictions: dict[str, np.ndarray] = field(default_factory=dict)
    """Each candidate form's per-example dev answers through the serving path (what ``dev_metric`` scored)."""
    dev_record: dict[str, Any] | None = None
    """The served form's per-example dev answers with their labels, logged on the version for the gate."""

    @property
    def weights_file(self) -> str | None:
        return EXPORTS[self.export][1] if self.export in EXPORTS else None

    def served_metric(self, fp32_metric: float) -> float:
        """The served form's own dev metric: an export's is its own predictions on the dev rows through the request
        path, scored here (never fp32's figure plus a difference); fp32's is the evaluate stage's figure."""
        return fp32_metric if self.export == "none" else self.dev_metric[self.export]

    def as_dict(self) -> dict[str, Any]:
        return {
            "export": self.export,
            "backend": self.backend,
            "reasons": self.reasons,
            "predict_p50_ms": self.latency_p50_ms,
            "dev_agreement_with_fp32": self.agreement,
            "dev_metric": self.dev_metric,
        }


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


def _load_candidate(
    name: str, params: Params, paths: Paths, task: GlueTask, workdir: Path, choice: ServingChoice
) -> TextClassifier | None:
    backend, relative = EXPORTS[name]
    folder = package(
        paths.student_dir,
        serving_config(task, params, backend, relative, name),
        workdir / f"candidate-{name}",
        paths.student_dir / EXPORT_DIR / relative,
    )
    try:
        return TextClassifier.from_folder(folder, apply_threads=True)
    except Exception as error:  # a broken export must not stop registration; fp32 is always there
        choice.reasons.append(f"{name}: could not be served ({type(error).__name__}: {error})")
        return None


def _eligible(
    name: str,
    model: TextClassifier,
    reference: np.ndarray,
    dev: pd.DataFrame,
    task: GlueTask,
    params: Params,
    choice: ServingChoice,
) -> bool:
    """Per-example agreement with fp32 on dev, through the serving path; records the export's own dev metric."""
    try:
        predictions = dev_scoring.predict_dev(model, task, dev)
    except Exception as error:
        choice.reasons.append(f"{name}: could not be served ({type(error).__name__}: {error})")
        return False
    share = dev_scoring.agreement(task, predictions, reference)
    choice.agreement[name] = share
    choice.predictions[name] = predictions
    choice.dev_metric[name] = dev_scoring.primary_metric(task, predictions, dev[LABEL].to_numpy())
    needed = params.register_.serving.min_agreement
    if share < needed:
        choice.reasons.append(
            f"{name}: agrees with fp32 on {share:.2%} of {len(dev)} dev examples < {needed:.2%}; not served"
        )
        return False
    return True


def choose_serving(
    params: Params, paths: Paths, task: GlueTask, workdir: Path, dev: pd.DataFrame | None
) -> ServingChoice:
    """Which form of the student to serve: the setting, or for ``auto`` the fastest eligible one (fp32 included)."""
    setting = params.register_.serving.export
    choice = ServingChoice()
    if setting == "none":
        choice.reasons.append("register.serving.export is none: serving the fp32 torch model")
        return choice
    usable = agreeing_exports(paths.student_dir / EXPORT_DIR, choice.reasons)
    candidates = usable if setting == "auto" else [name for name in usable if name == setting]
    if candidates and dev is None:
        choice.reasons.append("no validated dev set to check the exports' predictions against fp32: serving fp32")
        candidates = []
    models = {
        "none": TextClassifier.from_folder(
            package(paths.student_dir, serving_config(task, params), workdir / "candidate-none"), apply_threads=True
        )
    }
    if candidates:
        assert dev is not None
        reference = dev_scoring.predict_dev(models["none"], task, dev)
        choice.agreement["none"] = 1.0
        choice.predictions["none"] = reference
        choice.dev_metric["none"] = dev_scoring.primary_metric(task, reference, dev[LABEL].to_numpy())
    for name in candidates:
        model = _load_candidate(name, params, paths, task, workdir, choice)
        if model is not None and _eligible(name, model, reference, dev, task, params, choice):
            models[name] = model
    if setting != "auto" and setting not in models:
        choice.reasons.append(f"register.serving.export is {setting} but it is not eligible: serving fp32 torch")
    choice.latency_p50_ms = time_predict(models, example_input(task)) if len(models) > 1 else {}
    best: str = setting if setting in models else "none"
    if setting == "auto" and choice.latency_p50_ms:
        best = min(choice.latency_p50_ms, key=choice.latency_p50_ms.__getitem__)
        timings = ", ".join(f"{name} {ms:.2f} ms" for name, ms in sorted(choice.latency_p50_ms.items()))
        choice.reasons.append(f"auto: fastest batch-1 predict p50 of {timings}")
    choice.export = best
    if best != "none":
        choice.backend, _ = EXPORTS[best]
        choice.export_file = paths.student_dir / EXPORT_DIR / EXPORTS[best][1]
    choice.reasons.append(f"serving {'fp32 torch' if best == 'none' else best} ({choice.backend})")
    return choice
