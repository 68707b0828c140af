"""The training loop on a tiny BERT: optimizer groups, schedule, checkpoints, exact resume, early stopping."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Dataset
from safetensors.torch import load_file
from transformers import BertForSequenceClassification

from distilflow.models.devices import seed_everything
from distilflow.models.inference import predict_logits
from distilflow.stages.finetune import freeze_word_embeddings, supervised_loss
from distilflow.training.loop import (
    LoopSettings,
    linear_schedule,
    load_checkpoint,
    optimizer_groups,
    save_checkpoint,
    train,
)
from tests.loop_settings import loop_settings
from tests.tiny_bert import tiny_bert

SIGNAL = 7  # label 1 iff this token occurs: learnable in a few dozen steps


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """A 32-wide model gains nothing from threads, and on a shared CPU spinning threads cost seconds per step."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_model(seed: int = 0) -> BertForSequenceClassification:
    return tiny_bert(vocab_size=40, seed=seed)


def toy_data(rows: int, seed: int) -> Dataset:
    rng = np.random.default_rng(seed)
    input_ids, labels = [], []
    for _ in range(rows):
        body = rng.integers(8, 40, size=int(rng.integers(3, 20))).tolist()
        label = int(rng.integers(0, 2))
        if label:
            body[int(rng.integers(0, len(body)))] = SIGNAL
        input_ids.append([2, *body, 3])
        labels.append(label)
    return Dataset.from_dict(
        {
            "input_ids": input_ids,
            "token_type_ids": [[0] * len(ids) for ids in input_ids],
            "labels": labels,
            "length": [len(ids) for ids in input_ids],
        }
    )


def accuracy_on(dev: Dataset):  # type: ignore[no-untyped-def]
    def score(model: torch.nn.Module) -> dict[str, float]:
        predictions = predict_logits(model, dev, 64, pad_id=0).argmax(-1)
        return {"accuracy": float((predictions == np.asarray(dev["labels"])).mean())}

    return score


def settings(**overrides: object) -> LoopSettings:
    return loop_settings(**overrides)


def test_no_weight_decay_on_bias_and_layernorm_and_nothing_frozen_is_optimized() -> None:
    model = tiny_model()
    frozen = freeze_word_embeddings(model)
    assert frozen == 40 * 32
    decay, no_decay = optimizer_groups(model, 0.01)
    names = {id(p): n for n, p in model.named_parameters()}
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    assert all("bias" in names[id(p)] or "LayerNorm" in names[id(p)] for p in no_decay["params"])
    assert all(p.ndim == 2 for p in decay["params"])
    optimized = {id(p) for group in (decay, no_decay) for p in group["params"]}
    assert id(model.bert.embeddings.word_embeddings.weight) not in optimized
    assert len(optimized) == sum(1 for p in model.parameters() if p.requires_grad)


def test_linear_warmup_then_linear_decay_to_zero() -> None:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = linear_schedule(optimizer, warmup=4, total=10)
    rates = []
    for _ in range(10):
        rates.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    assert rates[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert rates[4:] == pytest.approx([1.0, 5 / 6, 4 / 6, 3 / 6, 2 / 6, 1 / 6])
    assert scheduler.get_last_lr()[0] == 0.0


def test_checkpoint_is_safetensors_and_json_and_restores_every_generator(tmp_path: Path) -> None:
    model = tiny_model()
    optimizer = torch.optim.AdamW(optimizer_groups(model, 0.01), lr=1e-3, foreach=True)
    scheduler = linear_schedule(optimizer, 2, 10)
    model(input_ids=torch.tensor([[2, 9, 3]]), labels=torch.tensor([1])).loss.backward()
    optimizer.step()
    scheduler.step()
    seed_everything(11)
    save_checkpoint(tmp_path / "last", model, optimizer, scheduler, {"step": 1, "note": "x"})
    expected = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)])

    assert sorted(p.name for p in (tmp_path / "last").iterdir()) == [
        "model.safetensors",
        "optimizer.safetensors",
        "rng.safetensors",
        "state.json",
    ]
    json.loads((tmp_path / "last" / "state.json").read_text())  # plain JSON, no pickle anywhere

    other = tiny_model(seed=1)
    other_optimizer = torch.optim.AdamW(optimizer_groups(other, 0.01), lr=1e-3, foreach=True)
    other_scheduler = linear_schedule(other_optimizer, 2, 10)
    seed_everything(99)
    progress = load_checkpoint(tmp_path / "last", other, other_optimizer, other_scheduler)
    assert progress == {"step": 1, "note": "x"}
    for key, value in model.state_dict().items():
        assert torch.equal(value, other.state_dict()[key]), key
    assert other_scheduler.get_last_lr() == scheduler.get_last_lr()
    restored = other_optimizer.state_dict()["state"]
    for index, values in optimizer.state_dict()["state"].items():
        for key, value in values.items():
            assert torch.equal(value, restored[index][key]), (index, key)
    assert torch.equal(torch.rand(3), expected[0])
    assert np.array_equal(np.random.rand(3), expected[1])
    assert [random.random() for _ in range(3)] == expected[2]


def test_the_loop_learns_and_returns_the_best_weights() -> None:
    train_set, dev = toy_data(256, seed=0), toy_data(64, seed=1)
    model, result = train(
        tiny_model(), train_set, supervised_loss, accuracy_on(dev), settings(epochs=3.0), pad_id=0, regression=False
    )
    assert result.steps == 3 * 16
    assert result.best_metric >= 0.9
    assert accuracy_on(dev)(model)["accuracy"] == pytest.approx(result.best_metric)
    assert result.samples == 3 * 256 and result.samples_per_s > 0
    dev_points = [p for p in result.history if "heldout_accuracy" in p]
    assert [p["step"] for p in dev_points] == list(range(4, 49, 4))
    assert max(p["heldout_accuracy"] for p in dev_points) == result.best_metric


class Crash(RuntimeError):
    pass


def test_a_run_interrupted_after_a_checkpoint_resumes_to_the_same_result(tmp_path: Path) -> None:
    train_set, dev = toy_data(200, seed=2), toy_data(48, seed=3)
    config = settings(epochs=2.0, eval_every=3, checkpoint_every=5)  # 13 batches/epoch: resume mid-epoch
    reference, expected = train(
        tiny_model(),
        train_set,
        supervised_loss,
        accuracy_on(dev),
        config,
        0,
        False,
        checkpoint_dir=tmp_path / "reference",
    )

    def crash_at_step_12(step: int, point: dict[str, float]) -> None:
        if step == 12:
            raise Crash

    with pytest.raises(Crash):
        train(
            tiny_model(),
            train_set,
            supervised_loss,
            accuracy_on(dev),
            config,
            0,
            False,
            checkpoint_dir=tmp_path / "run",
            on_eval=crash_at_step_12,
        )
    assert json.loads((tmp_path / "run" / "last" / "state.json").read_text())["progress"]["step"] == 10
    resumed, result = train(
        tiny_model(seed=123),
        train_set,
        supervised_loss,
        accuracy_on(dev),
        config,
        0,
        False,
        checkpoint_dir=tmp_path / "run",
    )
    assert result.resumed_from_step == 10
    assert (result.steps, result.best_step, result.best_metric) == (
        expected.steps,
        expected.best_step,
        expected.best_metric,
    )
    assert [p["train_loss"] for p in result.history] == [p["train_loss"] for p in expected.history]
    for key, value in reference.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key
    best = load_file(tmp_path / "run" / "best" / "model.safetensors")
    assert all(torch.equal(best[k], v) for k, v in resumed.state_dict().items())


def test_early_stopping_after_patience_evaluations_without_improvement() -> None:
    scores = iter([0.5, 0.7, 0.6, 0.7, 0.65, 0.9])

    def declining(model: torch.nn.Module) -> dict[str, float]:
        return {"accuracy": next(scores)}

    _, result = train(
        tiny_model(),
        toy_data(256, seed=0),
        supervised_loss,
        declining,
        settings(epochs=5.0, eval_every=2, early_stopping_patience=3),
        0,
        False,
    )
    # best 0.7 at the 2nd evaluation; 0.6, 0.7 (not better), 0.65 are three misses: stop at the 5th evaluation
    assert (result.best_metric, result.best_step, result.steps) == (0.7, 4, 10)


def test_lower_is_better_metrics_keep_the_lowest() -> None:
    scores = iter([3.0, 1.0, 2.0])
    _, result = train(
        tiny_model(),
        toy_data(96, seed=0),
        supervised_loss,
        lambda m: {"loss": next(scores)},
        settings(eval_every=2, primary_metric="loss", greater_is_better=False),
        0,
        False,
    )
    assert (result.best_metric, result.best_step) == (1.0, 4)


def test_gradient_accumulation_counts_optimizer_steps() -> None:
    _, result = train(
        tiny_model(),
        toy_data(128, seed=0),
        supervised_loss,
        lambda m: {"accuracy": 0.0},
        settings(batch_size=8, grad_accum_steps=4, eval_every=100),
        0,
        False,
    )
    assert result.steps == 128 // 8 // 4
    assert result.samples == 128


def test_cuda_requested_without_cuda_fails_clearly() -> None:
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    with pytest.raises(RuntimeError, match="no CUDA device"):
        train(
            tiny_model(),
            toy_data(16, seed=0),
            supervised_loss,
            lambda m: {"accuracy": 0.0},
            settings(device="cuda"),
            0,
            False,
        )
