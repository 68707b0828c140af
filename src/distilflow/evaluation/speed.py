"""How fast a model answers on CPU: batch-1 latency, batch-N throughput, several models timed side by side.

evaluate times each model alone; report times teacher and student together, interleaved, so their ratio holds
even on a machine that other work shares. Weights' size on disk sits here too: it is the other half of "small, fast".
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import Dataset

from distilflow.config.params import Params
from distilflow.config.release_params import EvaluateParams
from distilflow.models.batching import pad_batch


def folder_megabytes(folder: Path) -> float:
    """Size of the weights on disk (safetensors files), in MB (10^6 bytes)."""
    files = list(folder.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{folder}: no *.safetensors weights to measure")
    return sum(file.stat().st_size for file in files) / 1e6


# --- speed ---------------------------------------------------------------------------------------------------


def _inputs(rows: list[dict[str, Any]], pad_id: int) -> dict[str, torch.Tensor]:
    batch = pad_batch(rows, pad_id, regression=False)
    batch.pop("labels")
    return batch


def speed_inputs(
    dev: Dataset, pad_id: int, settings: EvaluateParams
) -> tuple[list[dict[str, torch.Tensor]], list[dict[str, torch.Tensor]]]:
    """Batch-1 requests (the first ``latency_examples`` dev rows) and full batches cycling through dev."""
    # Labels ride along because pad_batch reads them; STS-B's float scores become ints here, harmlessly,
    # since they are dropped before the forward pass.
    columns = dev.select_columns(["input_ids", "token_type_ids", "labels"])
    count = min(settings.latency_examples, len(dev))
    singles = [_inputs([columns[i]], pad_id) for i in range(count)]
    size = settings.throughput_batch_size
    rows = [columns[i % len(dev)] for i in range(size * settings.throughput_batches)]
    batches = [_inputs(rows[i : i + size], pad_id) for i in range(0, len(rows), size)]
    return singles, batches


@torch.inference_mode()
def _forward_seconds(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> float:
    start = time.perf_counter()
    model(**batch)
    return time.perf_counter() - start


@torch.inference_mode()
def measure_speed_together(
    models: Mapping[str, torch.nn.Module], dev: Dataset, pad_id: int, settings: EvaluateParams
) -> dict[str, dict[str, float]]:
    """CPU latency (batch 1, p50/p95) and throughput (batch N) of each model's forward pass, interleaved.

    The models take turns request by request, and the order alternates, so a burst of load from elsewhere on
    the machine hits all of them alike: their ratio is meaningful even where the absolute numbers are noisy.
    Tokenization is excluded (it is the same for all models that share a tokenizer).
    """
    singles, batches = speed_inputs(dev, pad_id, settings)
    names = list(models)
    for model in models.values():
        model.eval()
        # Warm-up: the first calls pay for allocation and kernel selection.
        for batch in singles[:5]:
            model(**batch)
        model(**batches[0])
    latencies: dict[str, list[float]] = {name: [] for name in names}
    for index, batch in enumerate(singles):
        for name in names if index % 2 == 0 else reversed(names):
            latencies[name].append(_forward_seconds(models[name], batch) * 1000)
    elapsed = dict.fromkeys(names, 0.0)
    for index, batch in enumerate(batches):
        for name in names if index % 2 == 0 else reversed(names):
            elapsed[name] += _forward_seconds(models[name], batch)
    rows = sum(len(batch["input_ids"]) for batch in batches)
    size = settings.throughput_batch_size
    return {
        name: {
            "latency_p50_ms": float(np.percentile(latencies[name], 50)),
            "latency_p95_ms": float(np.percentile(latencies[name], 95)),
            f"throughput_b{size}_per_s": rows / elapsed[name],
        }
        for name in names
    }


def measure_speed(model: torch.nn.Module, dev: Dataset, pad_id: int, params: Params) -> dict[str, float]:
    """Batch-1 latency percentiles and batch-N throughput of one model's forward pass on CPU."""
    return measure_speed_together({"model": model}, dev, pad_id, params.evaluate)["model"]
