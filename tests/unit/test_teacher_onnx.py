"""Teacher labelling through ONNX Runtime: a real export of a tiny BERT, real sessions, eager PyTorch as reference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from datasets import Dataset
from transformers import BertForSequenceClassification

from distilflow.export.student import onnx_session
from distilflow.export.teacher_onnx import LOGIT_TOLERANCE, export_teacher, onnx_logits, teacher_logits
from distilflow.models.inference import predict_logits
from tests.tiny_bert import tiny_bert


@pytest.fixture(scope="module")
def teacher() -> BertForSequenceClassification:
    return tiny_bert(vocab_size=50).eval()


def rows(count: int, seed: int) -> Dataset:
    """Lengths 3..30, so the length-sorted batches mix padded and unpadded ones."""
    rng = np.random.default_rng(seed)
    ids = [[2, *rng.integers(5, 50, size=int(rng.integers(1, 29))).tolist(), 3] for _ in range(count)]
    return Dataset.from_dict(
        {"input_ids": ids, "token_type_ids": [[0] * len(r) for r in ids], "length": [len(r) for r in ids]}
    )


@pytest.fixture(scope="module")
def exported(teacher: BertForSequenceClassification, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_teacher(teacher, tmp_path_factory.mktemp("onnx"))


def test_onnx_logits_match_eager_within_tolerance_in_row_order(
    teacher: BertForSequenceClassification, exported: Path
) -> None:
    data = rows(200, seed=1)
    eager = predict_logits(teacher, data, 16, pad_id=0)
    fast = onnx_logits(onnx_session(exported, threads=1), data, 16, pad_id=0)
    assert fast.shape == eager.shape == (200, 2)
    assert np.abs(fast - eager).max() < LOGIT_TOLERANCE
    assert (fast.argmax(-1) == eager.argmax(-1)).all()


def test_onnx_path_records_agreement_and_speed_on_a_sample(teacher: BertForSequenceClassification) -> None:
    data = rows(120, seed=2)
    logits, stats = teacher_logits(teacher, data, 32, pad_id=0, backend="onnx", check_rows=50, seed=3)
    assert stats["teacher_backend"] == "onnx"
    assert stats["teacher_check_rows"] == 50
    assert stats["teacher_label_agreement"] == 1.0
    assert 0 <= stats["teacher_max_logit_difference"] < LOGIT_TOLERANCE
    assert stats["teacher_labelling_speedup_vs_eager"] > 0
    assert np.abs(logits - predict_logits(teacher, data, 32, pad_id=0)).max() < LOGIT_TOLERANCE


def test_labelling_a_transfer_set_reports_progress_off_a_terminal(
    teacher: BertForSequenceClassification, capsys: pytest.CaptureFixture[str]
) -> None:
    """Labelling takes minutes on real data: off a terminal, a line per 10 % with the rows done, rate and ETA."""
    teacher_logits(teacher, rows(40, seed=5), 4, pad_id=0, backend="torch")
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("teacher labels: ")]
    assert lines[0].startswith("teacher labels: 4/40 rows (10%)")
    assert lines[-1].startswith("teacher labels: 40/40 rows (100%)")
    assert len(lines) == 10 and all(" row/s  elapsed " in line and "ETA" in line for line in lines)


def test_torch_backend_is_eager_pytorch_exactly(teacher: BertForSequenceClassification) -> None:
    data = rows(40, seed=4)
    logits, stats = teacher_logits(teacher, data, 8, pad_id=0, backend="torch")
    assert stats == {"teacher_backend": "torch"}
    np.testing.assert_array_equal(logits, predict_logits(teacher, data, 8, pad_id=0))
