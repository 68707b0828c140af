"""Teacher labelling through ONNX Runtime: export the teacher once, label length-sorted batches, check against eager.

Labelling the transfer set is the teacher's biggest job. On CPU, ONNX Runtime runs the same fp32 graph several
times faster than eager PyTorch: it fuses the attention, LayerNorm and GELU subgraphs and skips the Python
dispatch of every op. Before its labels are used, a sample of rows is labelled both ways: the logits must lie
within :data:`LOGIT_TOLERANCE` of eager's, or the eager labels are used instead (and the stats say so).
PyTorch remains the path on CUDA (the CPU build of ONNX Runtime does not apply there) and without onnxruntime.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import Dataset

from distilflow.export.student import INPUT_NAMES, export_onnx, onnx_session
from distilflow.models.batching import logits_by_length
from distilflow.models.inference import predict_logits

LOGIT_TOLERANCE = 1e-3
"""Largest absolute logit difference from eager PyTorch that the ONNX labels may show on the check sample."""


def onnx_runtime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def optimize_for_cpu(source: Path, target: Path, model: Any) -> Path:
    """ONNX Runtime's BERT fusions (attention, LayerNorm, GELU, embeddings), written once beside the export."""
    from onnxruntime.transformers.optimizer import optimize_model

    config = model.config
    optimized = optimize_model(
        str(source), model_type="bert", num_heads=config.num_attention_heads, hidden_size=config.hidden_size
    )
    optimized.save_model_to_file(str(target))
    return target


def export_teacher(model: Any, folder: Path) -> Path:
    """The teacher as an optimized ONNX graph (inputs as in distilflow.export.student.INPUT_NAMES, output logits)."""
    raw = export_onnx(model.cpu().eval(), folder / "teacher.onnx")
    return optimize_for_cpu(raw, folder / "teacher-optimized.onnx", model)


def cached_teacher_session(model: Any, folder: Path, threads: int | None = None) -> Any:
    """An ONNX Runtime session of the teacher exported into ``folder`` once; later calls reuse the file.

    The export goes to a sibling folder that is renamed into place, so a process starting meanwhile never
    loads half a graph.
    """
    graph = folder / "teacher-optimized.onnx"
    if not graph.is_file():
        tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        export_teacher(model, tmp)
        try:
            tmp.rename(folder)
        except OSError:  # another process got there first: use its export
            shutil.rmtree(tmp, ignore_errors=True)
    return onnx_session(graph, threads, spin=False)


def onnx_logits(session: Any, dataset: Dataset, batch_size: int, pad_id: int) -> np.ndarray:
    """Logits in the dataset's row order, from length-sorted batches (little padding), like predict_logits."""

    def run_batch(batch: dict[str, torch.Tensor]) -> np.ndarray:
        return np.asarray(session.run(["logits"], {name: batch[name].numpy() for name in INPUT_NAMES})[0])

    return logits_by_length(dataset, batch_size, pad_id, run_batch)


def compare_on_sample(
    model: Any, session: Any, dataset: Dataset, batch_size: int, pad_id: int, rows: int, seed: int
) -> dict[str, float]:
    """Both paths on the same random rows, timed in turn: agreement, largest logit difference, speedup."""
    rng = np.random.default_rng(seed)
    picked = np.sort(rng.choice(len(dataset), size=min(rows, len(dataset)), replace=False))
    sample = dataset.select(picked.tolist())
    onnx_logits(session, sample.select(range(min(batch_size, len(sample)))), batch_size, pad_id)  # warm-up
    started = time.perf_counter()
    eager = predict_logits(model, sample, batch_size, pad_id)
    eager_seconds = time.perf_counter() - started
    started = time.perf_counter()
    fast = onnx_logits(session, sample, batch_size, pad_id)
    onnx_seconds = time.perf_counter() - started
    return {
        "teacher_check_rows": len(sample),
        "teacher_label_agreement": float((eager.argmax(-1) == fast.argmax(-1)).mean()) if len(sample) else 1.0,
        "teacher_max_logit_difference": float(np.abs(eager - fast).max()) if len(sample) else 0.0,
        "teacher_eager_examples_per_s": len(sample) / max(eager_seconds, 1e-9),
        "teacher_onnx_examples_per_s": len(sample) / max(onnx_seconds, 1e-9),
        "teacher_labelling_speedup_vs_eager": eager_seconds / max(onnx_seconds, 1e-9),
    }


LABELLING = "teacher labels"


def eager_logits(model: Any, dataset: Dataset, batch_size: int, pad_id: int) -> np.ndarray:
    """PyTorch labels on the GPU when there is one, wherever the model was loaded; the model goes back after.

    The augment stage loads the teacher on the CPU; labelling it there on a GPU machine took the CPU's 22 minutes
    for SST-2's transfer set while the GPU idled.
    """
    home = next(model.parameters()).device
    model.to(torch.device("cuda") if torch.cuda.is_available() else home)  # the current CUDA device
    try:
        return predict_logits(model, dataset, batch_size, pad_id, progress=LABELLING)
    finally:
        model.to(home)


def teacher_logits(
    model: Any,
    dataset: Dataset,
    batch_size: int,
    pad_id: int,
    backend: str = "auto",
    check_rows: int = 512,
    seed: int = 0,
    workdir: Path | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """The teacher's logits on every row, and how they were made.

    ``backend``: "onnx", "torch", or "auto" (ONNX Runtime on CPU when installed, else PyTorch). The ONNX path
    first labels ``check_rows`` random rows both ways; beyond :data:`LOGIT_TOLERANCE` it falls back to eager.
    ``workdir`` keeps the exported graph (a temporary folder by default).
    """
    on_cuda = next(model.parameters()).device.type == "cuda" or torch.cuda.is_available()
    if backend == "torch" or (backend == "auto" and (on_cuda or not onnx_runtime_available())):
        return eager_logits(model, dataset, batch_size, pad_id), {"teacher_backend": "torch"}
    with tempfile.TemporaryDirectory(prefix="teacher-onnx-") as tmp:
        folder = workdir or Path(tmp)
        started = time.perf_counter()
        session = onnx_session(export_teacher(model, folder), spin=False)
        stats: dict[str, Any] = {"teacher_export_seconds": time.perf_counter() - started}
        stats.update(compare_on_sample(model, session, dataset, batch_size, pad_id, check_rows, seed))
        stats["teacher_logit_tolerance"] = LOGIT_TOLERANCE
        if stats["teacher_max_logit_difference"] > LOGIT_TOLERANCE:
            labels = predict_logits(model, dataset, batch_size, pad_id, progress=LABELLING)
            return labels, {**stats, "teacher_backend": "torch-fallback"}
        return onnx_logits(session, dataset, batch_size, pad_id), {**stats, "teacher_backend": "onnx"}
