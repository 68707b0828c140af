"""models.pooling: the mean-pooled classifier is what it says, survives every save and export, and a checkpoint's own
pooling is read from its sentence-transformers files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Dataset
from transformers import BertConfig, BertForSequenceClassification

from distilflow.export.student import (
    export_onnx,
    numpy_batches,
    onnx_forward,
    onnx_session,
    run_batches,
    save_int8,
    torch_forward,
)
from distilflow.models import pooling
from distilflow.models.loading import load_classifier, load_teacher_for_finetuning, resolve_teacher
from distilflow.models.pooling import load_int8
from distilflow.numerics import quantize_dynamic_int8
from distilflow.tasks import get_task


def tiny_mean_pooled(seed: int = 0) -> pooling.MeanPooledBertForSequenceClassification:
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=60, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, num_labels=2
    )
    setattr(config, pooling.CONFIG_KEY, pooling.MEAN)
    return pooling.MeanPooledBertForSequenceClassification(config).eval()


def padded_rows(count: int = 40) -> Dataset:
    rng = np.random.default_rng(0)
    ids = [[2, *rng.integers(5, 60, size=int(rng.integers(1, 20))).tolist(), 3] for _ in range(count)]
    return Dataset.from_dict(
        {
            "input_ids": ids,
            "token_type_ids": [[0] * len(x) for x in ids],
            "labels": [0] * count,
            "length": list(map(len, ids)),
        }
    )


def test_the_head_reads_the_masked_mean_of_the_last_layer_whatever_the_padding() -> None:
    model = tiny_mean_pooled()
    ids = torch.tensor([[2, 7, 8, 9, 3, 0, 0, 0]])
    mask = (ids != 0).long()
    with torch.no_grad():
        padded = model(input_ids=ids, attention_mask=mask).logits
        unpadded = model(input_ids=ids[:, :5], attention_mask=mask[:, :5]).logits
        tokens = model.bert(ids[:, :5], attention_mask=mask[:, :5]).last_hidden_state
        by_hand = model.classifier(tokens.mean(dim=1))
    torch.testing.assert_close(padded, unpadded, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(padded, by_hand, atol=1e-5, rtol=1e-5)
    assert model.bert.pooler is None, "an unused pooler would stop DDP at its first step"
    loss = model(input_ids=ids, attention_mask=mask, labels=torch.tensor([1])).loss
    assert loss is not None and loss.item() == pytest.approx(
        torch.nn.functional.cross_entropy(padded, torch.tensor([1])).item(), rel=1e-5
    )


def test_a_saved_mean_pooled_model_loads_back_as_one_and_exports_the_same_function(tmp_path: Path) -> None:
    model = tiny_mean_pooled()
    model.save_pretrained(str(tmp_path / "model"))
    assert json.loads((tmp_path / "model" / "config.json").read_text())[pooling.CONFIG_KEY] == pooling.MEAN
    loaded = load_classifier(tmp_path / "model")
    assert isinstance(loaded, pooling.MeanPooledBertForSequenceClassification)
    batches, order = numpy_batches(padded_rows(), 16, 0)
    assert any((batch["attention_mask"] == 0).any() for batch in batches)
    reference = run_batches(torch_forward(model), batches, order)
    np.testing.assert_allclose(run_batches(torch_forward(loaded), batches, order), reference, atol=1e-6)
    onnx_file = export_onnx(model, tmp_path / "onnx" / "model.onnx")
    np.testing.assert_allclose(run_batches(onnx_forward(onnx_session(onnx_file)), batches, order), reference, atol=1e-4)
    save_int8(model, quantize_dynamic_int8(model), tmp_path / "int8")
    int8 = load_int8(tmp_path / "int8")  # rebuilt from config.json: must be the mean-pooled architecture again
    assert (run_batches(torch_forward(int8), batches, order).argmax(-1) == reference.argmax(-1)).mean() > 0.9


def test_a_plain_bert_config_stays_the_cls_classifier(tmp_path: Path) -> None:
    config = BertConfig(vocab_size=60, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    BertForSequenceClassification(config).save_pretrained(str(tmp_path))
    assert type(load_classifier(tmp_path)) is BertForSequenceClassification
    assert type(pooling.from_config(config)) is BertForSequenceClassification


def test_the_packaged_teacher_names_mean_pooling_and_the_setting_follows_it() -> None:
    folder = resolve_teacher("packaged-minilm")
    assert pooling.checkpoint_pooling(folder) == pooling.MEAN  # all-MiniLM-L6-v2's 1_Pooling/config.json
    teacher = load_teacher_for_finetuning("packaged-minilm", get_task("sst2"), "checkpoint")
    assert isinstance(teacher, pooling.MeanPooledBertForSequenceClassification)
    assert teacher.bert.encoder.layer[0].attention.self.query.weight.abs().sum() > 0  # the encoder's weights loaded
    cls_teacher = load_teacher_for_finetuning("packaged-minilm", get_task("sst2"), "cls")
    assert type(cls_teacher) is BertForSequenceClassification
    torch.testing.assert_close(
        cls_teacher.bert.encoder.layer[0].attention.self.query.weight,
        teacher.bert.encoder.layer[0].attention.self.query.weight,
    )


def write_pooling_config(folder: Path, **modes: bool) -> Path:
    (folder / "1_Pooling").mkdir(parents=True)
    modules = [{"idx": 0, "path": "", "type": "sentence_transformers.models.Transformer"}]
    modules.append({"idx": 1, "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"})
    (folder / "modules.json").write_text(json.dumps(modules))
    config = {"word_embedding_dimension": 32, **{f"pooling_mode_{mode}": on for mode, on in modes.items()}}
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(config))
    return folder


def test_a_checkpoint_s_own_pooling_is_read_and_one_without_a_classifier_is_refused_by_name(tmp_path: Path) -> None:
    assert pooling.checkpoint_pooling(tmp_path) == pooling.CLS  # no sentence-transformers files: BERT's own
    assert pooling.checkpoint_pooling(write_pooling_config(tmp_path / "c", cls_token=True)) == pooling.CLS
    assert pooling.checkpoint_pooling(write_pooling_config(tmp_path / "m", mean_tokens=True, cls_token=False)) == "mean"
    with pytest.raises(ValueError, match=r"max_tokens.*set finetune.pooling"):
        pooling.checkpoint_pooling(write_pooling_config(tmp_path / "x", max_tokens=True))
    assert pooling.resolve("checkpoint", tmp_path / "m") == pooling.MEAN
    assert pooling.resolve("cls", tmp_path / "m") == pooling.CLS
    with pytest.raises(ValueError, match="expected one of cls, mean, checkpoint"):
        pooling.resolve("max", tmp_path)
