"""Exports of the student (torch int8, ONNX, ONNX int8) agree with the fp32 student and load back."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from datasets import Dataset
from transformers import BertForSequenceClassification, BertTokenizerFast

from distilflow.config.training_params import ExportParams
from distilflow.export.student import (
    agrees,
    export_student,
    numpy_batches,
    onnx_forward,
    onnx_session,
    run_batches,
    torch_forward,
)
from distilflow.models.pooling import load_int8
from distilflow.tasks import get_task
from tests.tiny_bert import tiny_bert

WORDS = [f"w{i}" for i in range(200)]


@pytest.fixture(scope="module")
def setup(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[BertForSequenceClassification, BertTokenizerFast, Dataset, Path]:
    folder = tmp_path_factory.mktemp("export")
    (folder / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    tokenizer = BertTokenizerFast.from_pretrained(str(folder))
    model = tiny_bert(vocab_size=len(WORDS) + 5).eval()
    # Labels the model itself predicts, with rows of very different lengths so batches carry padding.
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(WORDS, size=int(rng.integers(2, 30)))) for _ in range(96)]
    encoded = tokenizer(texts)
    rows = Dataset.from_dict(
        {
            "input_ids": encoded["input_ids"],
            "token_type_ids": encoded["token_type_ids"],
            "labels": [0] * len(texts),
            "length": [len(x) for x in encoded["input_ids"]],
        }
    )
    batches, order = numpy_batches(rows, 16, tokenizer.pad_token_id)
    predictions = run_batches(torch_forward(model), batches, order).argmax(-1)
    dev = rows.remove_columns("labels").add_column("labels", predictions.tolist())
    return model, tokenizer, dev, folder / "out"


def test_every_export_agrees_with_the_fp32_student(setup: tuple) -> None:  # type: ignore[type-arg]
    model, tokenizer, dev, out = setup
    summary = export_student(
        model, tokenizer, dev, get_task("sst2"), out, ExportParams(formats=["int8", "onnx", "onnx-int8"]), batch_size=16
    )
    assert set(summary) == {"int8", "onnx", "onnx-int8"}
    for name, outcome in summary.items():
        assert outcome["fp32_accuracy"] == pytest.approx(1.0), "dev labels are the fp32 predictions"
        assert outcome["agrees"], (name, outcome)
        assert outcome["throughput_per_s"] > 0
    assert summary["onnx"]["max_abs_logit_diff"] < 1e-4, "fp32 ONNX is the same function"
    assert (out / "int8" / "model.pt").is_file() and (out / "int8" / "config.json").is_file()
    assert (out / "onnx" / "model.onnx").is_file() and (out / "onnx" / "tokenizer.json").is_file()
    assert (out / "onnx-int8" / "model.onnx").stat().st_size < (out / "onnx" / "model.onnx").stat().st_size
    json.dumps(summary)  # the summary is written as JSON by the stage


def test_saved_exports_reproduce_the_logits_on_padded_batches(setup: tuple) -> None:  # type: ignore[type-arg]
    model, tokenizer, dev, out = setup
    if not (out / "onnx" / "model.onnx").is_file():
        export_student(model, tokenizer, dev, get_task("sst2"), out, ExportParams(formats=["int8", "onnx"]), 16)
    batches, order = numpy_batches(dev, 32, tokenizer.pad_token_id)
    assert any((batch["attention_mask"] == 0).any() for batch in batches)
    reference = run_batches(torch_forward(model), batches, order)
    onnx_logits = run_batches(onnx_forward(onnx_session(out / "onnx" / "model.onnx")), batches, order)
    np.testing.assert_allclose(onnx_logits, reference, atol=1e-4)
    int8_logits = run_batches(torch_forward(load_int8(out / "int8")), batches, order)
    assert np.abs(int8_logits - reference).max() < 0.1  # int8 weights: close, not identical
    assert (int8_logits.argmax(-1) == reference.argmax(-1)).mean() > 0.9


def test_regression_exports_agree_on_close_scores_even_when_correlation_moves() -> None:
    """A barely trained STS-B student has a fragile Pearson; scores within tolerance of fp32's still agree."""
    stsb, sst2 = get_task("stsb"), get_task("sst2")
    fp32 = np.array([2.50, 2.51, 2.49, 2.50])
    close = fp32 + np.array([0.02, -0.03, 0.01, 0.0])
    far = fp32 + np.array([0.5, 0.0, 0.0, 0.0])
    assert agrees(stsb, metric=0.10, fp32_metric=0.40, predictions=close, fp32_predictions=fp32, max_drop=0.005)
    assert not agrees(stsb, metric=0.10, fp32_metric=0.40, predictions=far, fp32_predictions=fp32, max_drop=0.005)
    assert agrees(stsb, metric=0.398, fp32_metric=0.40, predictions=far, fp32_predictions=fp32, max_drop=0.005)
    labels = np.array([0, 1])
    assert not agrees(sst2, metric=0.80, fp32_metric=0.81, predictions=labels, fp32_predictions=labels, max_drop=0.005)
    assert agrees(sst2, metric=0.808, fp32_metric=0.81, predictions=labels, fp32_predictions=labels, max_drop=0.005)
