"""Deployable forms of the student: torch dynamic int8, ONNX (onnxruntime) and ONNX dynamic int8.

Each export is checked against the fp32 student on the held-out slice of train (not dev: serving it is a choice),
its metric within ``max_accuracy_drop``, and timed at the same batch size in the same process, so the numbers compare.
Layout under the export folder (``models/student/export``)::

    int8/model.pt + config.json        torch state dict of the dynamically quantized model (load_int8)
    onnx/model.onnx + tokenizer files  inputs input_ids, attention_mask, token_type_ids (int64); output logits
    onnx-int8/model.onnx + tokenizer   the same graph with int8 weights
    summary.json                       {format: {agrees, accuracy, fp32_accuracy, ...}}
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import Dataset
from transformers import PreTrainedModel

from distilflow.config.training_params import ExportParams
from distilflow.metrics import compute_glue_metrics
from distilflow.models.batching import pad_batch
from distilflow.models.inference import logits_to_predictions
from distilflow.models.pooling import load_int8
from distilflow.numerics import quantize_dynamic_int8
from distilflow.tasks import GlueTask

INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
Forward = Callable[[dict[str, np.ndarray]], np.ndarray]
"""A model as a function: int64 arrays named as in INPUT_NAMES → float logits (batch, labels)."""


class _LogitsOnly(torch.nn.Module):
    """ONNX wants positional tensors in and a tensor out, not a ModelOutput."""

    def __init__(self, model: PreTrainedModel) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
    ) -> torch.Tensor:
        logits: torch.Tensor = self.model(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        ).logits
        return logits


def quantize_int8(model: PreTrainedModel) -> torch.nn.Module:
    """Dynamic int8: Linear weights stored as int8, activations quantized per batch at run time; no calibration."""
    import copy

    return quantize_dynamic_int8(copy.deepcopy(model).eval())


def save_int8(model: PreTrainedModel, quantized: torch.nn.Module, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    model.config.save_pretrained(str(folder))
    torch.save(quantized.state_dict(), folder / "model.pt")


def export_onnx(model: PreTrainedModel, path: Path, opset: int = 17) -> Path:
    """Trace with a padded batch: traced on an all-ones mask, transformers skips building the mask entirely."""
    path.parent.mkdir(parents=True, exist_ok=True)
    input_ids = torch.full((2, 8), model.config.pad_token_id or 0, dtype=torch.long)
    input_ids[:, 0] = 101 % model.config.vocab_size
    input_ids[0, 1:8] = 1000 % model.config.vocab_size
    input_ids[1, 1:4] = 2000 % model.config.vocab_size
    attention_mask = (input_ids != (model.config.pad_token_id or 0)).long()
    token_type_ids = torch.zeros_like(input_ids)
    dynamic = {name: {0: "batch", 1: "sequence"} for name in INPUT_NAMES}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python control flow on shapes
        torch.onnx.export(
            _LogitsOnly(model.eval()),
            (input_ids, attention_mask, token_type_ids),
            str(path),
            dynamo=False,
            input_names=list(INPUT_NAMES),
            output_names=["logits"],
            dynamic_axes={**dynamic, "logits": {0: "batch"}},
            opset_version=opset,
        )
    return path


def quantize_onnx(source: Path, target: Path) -> Path:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    target.parent.mkdir(parents=True, exist_ok=True)
    quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8)
    return target


def onnx_session(path: str | Path, threads: int | None = None, spin: bool = True) -> Any:
    """``spin=False``: idle pool threads sleep instead of spinning, as OMP_WAIT_POLICY=PASSIVE does for torch;
    on a shared, oversubscribed CPU a spinning thread burns the time slice a descheduled peer needs."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    # Same thread count as torch, so speed comparisons between formats are fair.
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    if not spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def torch_forward(model: torch.nn.Module) -> Forward:
    model.eval()

    @torch.inference_mode()
    def forward(batch: dict[str, np.ndarray]) -> np.ndarray:
        logits: np.ndarray = model(**{k: torch.from_numpy(v) for k, v in batch.items()}).logits.float().numpy()
        return logits

    return forward


def onnx_forward(session: Any) -> Forward:
    def forward(batch: dict[str, np.ndarray]) -> np.ndarray:
        logits: np.ndarray = session.run(["logits"], batch)[0]
        return logits

    return forward


def numpy_batches(dataset: Dataset, batch_size: int, pad_id: int) -> tuple[list[dict[str, np.ndarray]], np.ndarray]:
    """Length-sorted padded batches and the order that maps them back to the dataset's rows."""
    columns = dataset.select_columns(["input_ids", "token_type_ids", "labels"])
    order = np.argsort(np.asarray(dataset["length"]), kind="stable")
    batches = []
    for start in range(0, len(order), batch_size):
        batch = pad_batch([columns[int(i)] for i in order[start : start + batch_size]], pad_id, regression=False)
        batches.append({name: batch[name].numpy() for name in INPUT_NAMES})
    return batches, order


def run_batches(forward: Forward, batches: Sequence[dict[str, np.ndarray]], order: np.ndarray) -> np.ndarray:
    outputs = np.concatenate([forward(batch) for batch in batches])
    logits = np.empty_like(outputs)
    logits[order] = outputs
    return logits


def throughput(forward: Forward, batches: Sequence[dict[str, np.ndarray]], repeats: int = 3) -> float:
    """Examples per second over all batches; best of ``repeats`` passes, since noise only ever slows a pass."""
    forward(batches[0])  # warm-up: allocation, kernel and graph selection
    examples = sum(len(batch["input_ids"]) for batch in batches)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for batch in batches:
            forward(batch)
        best = min(best, time.perf_counter() - start)
    return examples / best


def score(task: GlueTask, logits: np.ndarray, references: Sequence[Any]) -> float:
    metrics = compute_glue_metrics(task.name, logits_to_predictions(logits, task), list(references))
    return float(metrics[task.primary_metric])


# Regression scores live on 0..5; an export whose every score is this close to fp32's changes no prediction that
# matters, whatever the correlation of a barely trained student does with such a shift.
REGRESSION_SCORE_TOLERANCE = 0.05


def agrees(
    task: GlueTask,
    metric: float,
    fp32_metric: float,
    predictions: np.ndarray,
    fp32_predictions: np.ndarray,
    max_drop: float,
) -> bool:
    """Within ``max_drop`` of fp32's metric; for regression also when every score is within tolerance of fp32's."""
    if abs(metric - fp32_metric) <= max_drop:
        return True
    if task.is_regression:
        return bool(np.abs(predictions - fp32_predictions).max() <= REGRESSION_SCORE_TOLERANCE)
    return False


def export_student(
    model: PreTrainedModel,
    tokenizer: Any,
    rows: Dataset,
    task: GlueTask,
    folder: Path,
    config: ExportParams,
    batch_size: int,
) -> dict[str, Any]:
    """Write every format in ``config.formats``, check each against fp32 on ``rows`` (the held-out slice of train:
    whether an export may be served is a choice, and dev is read once, by evaluate) and time it."""
    pad_id = tokenizer.pad_token_id
    batches, order = numpy_batches(rows, batch_size, pad_id)
    references = rows["labels"]
    fp32 = torch_forward(model.eval())
    fp32_logits = run_batches(fp32, batches, order)
    fp32_metric = score(task, fp32_logits, references)
    fp32_speed = throughput(fp32, batches)
    forwards: dict[str, Forward] = {}
    for name in config.formats:
        if name == "int8":
            quantized = quantize_int8(model)
            save_int8(model, quantized, folder / "int8")
            forwards[name] = torch_forward(load_int8(folder / "int8"))  # score what was saved, not what is in memory
        else:
            onnx_path = export_onnx(model, folder / "onnx" / "model.onnx")
            if name == "onnx-int8":
                onnx_path = quantize_onnx(onnx_path, folder / "onnx-int8" / "model.onnx")
            tokenizer.save_pretrained(str(onnx_path.parent))
            forwards[name] = onnx_forward(onnx_session(onnx_path))
    if "onnx" not in config.formats and (folder / "onnx").exists():
        # onnx-int8 needs the fp32 graph as its source; keep only what was asked for.
        import shutil

        shutil.rmtree(folder / "onnx")
    summary: dict[str, Any] = {}
    fp32_predictions = logits_to_predictions(fp32_logits, task)
    for fmt, forward in forwards.items():
        logits = run_batches(forward, batches, order)
        metric = score(task, logits, references)
        predictions = logits_to_predictions(logits, task)
        speed = throughput(forward, batches)
        summary[fmt] = {
            "agrees": agrees(task, metric, fp32_metric, predictions, fp32_predictions, config.max_accuracy_drop),
            "metric": task.primary_metric,
            "accuracy": metric,
            "fp32_accuracy": fp32_metric,
            "prediction_agreement": float(np.mean(np.isclose(predictions, fp32_predictions, atol=1e-3))),
            "max_abs_logit_diff": float(np.abs(logits - fp32_logits).max()),
            "throughput_per_s": speed,
            "fp32_throughput_per_s": fp32_speed,
            "speedup_vs_fp32": speed / fp32_speed,
            "batch_size": batch_size,
            "size_mb": sum(f.stat().st_size for f in (folder / fmt).iterdir() if f.suffix in (".pt", ".onnx")) / 1e6,
        }
    return summary
