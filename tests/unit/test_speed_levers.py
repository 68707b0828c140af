"""The opt-in speed levers of the training loop: exact-length batches, no mask on unpadded batches, AdamW choice."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from distilflow.models.batching import LengthGroupedBatches, pad_columns
from distilflow.training.loop import build_optimizer
from tests.loop_settings import loop_settings


def test_exact_length_batches_cover_every_row_once_and_full_batches_have_one_length() -> None:
    lengths = np.random.default_rng(0).integers(3, 12, size=500).tolist()
    sampler = LengthGroupedBatches(lengths, batch_size=16, seed=1, exact=True)
    batches = sampler.batches(0)
    assert sorted(i for batch in batches for i in batch) == list(range(500))
    full = [batch for batch in batches if len(batch) == 16]
    single = [batch for batch in full if len({lengths[i] for i in batch}) == 1]
    # Per length, all but its last partial batch are unpadded; only the pooled leftovers mix lengths.
    assert len(full) - len(single) <= len(set(lengths))
    assert len(single) >= 500 // 16 - len(set(lengths))
    assert sampler.batches(0) == batches and sampler.batches(1) != batches


def test_the_mask_is_left_out_only_when_the_batch_has_no_padding() -> None:
    same = {"input_ids": [[2, 5, 3], [2, 6, 3]], "labels": [0, 1]}
    mixed = {"input_ids": [[2, 5, 3], [2, 3]], "labels": [0, 1]}
    assert "attention_mask" not in pad_columns(same, 0, regression=False, mask_if_full=False)
    assert "attention_mask" in pad_columns(same, 0, regression=False)
    batch = pad_columns(mixed, 0, regression=False, mask_if_full=False)
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]


@pytest.mark.parametrize(
    ("choice", "foreach", "fused"), [("foreach", True, None), ("fused", None, True), ("loop", False, None)]
)
def test_the_adamw_implementation_is_the_one_asked_for(choice: str, foreach: bool | None, fused: bool | None) -> None:
    settings = loop_settings(batch_size=2, weight_decay=0.0, warmup_ratio=0.0, eval_every=1, seed=0, optimizer=choice)
    optimizer = build_optimizer(torch.nn.Linear(3, 2), settings, torch.device("cpu"))
    assert optimizer.defaults["foreach"] is foreach and optimizer.defaults["fused"] is fused


def test_lazy_loss_reads_the_same_per_step_losses_and_all_levers_still_learn() -> None:
    from distilflow.stages.finetune import supervised_loss
    from distilflow.training.loop import train
    from tests.unit.test_training import accuracy_on, settings, tiny_model, toy_data

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        data, dev = toy_data(160, seed=1), toy_data(64, seed=2)
        runs = {}
        for lazy in (False, True):
            _, runs[lazy] = train(
                tiny_model(), data, supervised_loss, accuracy_on(dev), settings(lazy_loss=lazy), 0, regression=False
            )
        assert [p["train_loss"] for p in runs[True].history] == [p["train_loss"] for p in runs[False].history]
        assert not any(np.isnan(p["train_loss"]) for p in runs[True].history)
        levers = settings(
            epochs=3.0, seed=7, lazy_loss=True, exact_length_batches=True, drop_full_mask=True, optimizer="fused"
        )
        # The same recipe as test_training's learning test, with every lever on: it must learn as well.
        _, fast = train(tiny_model(), toy_data(256, 0), supervised_loss, accuracy_on(toy_data(64, 1)), levers, 0, False)
        assert fast.best_metric >= 0.9
    finally:
        torch.set_num_threads(threads)
