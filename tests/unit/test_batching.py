"""Length-grouped batches and dynamic padding."""

from __future__ import annotations

import pytest
import torch
from datasets import Dataset

from distilflow.models.batching import Collator, Columns, LengthGroupedBatches, pad_batch, pad_columns


def lengths(count: int, seed: int = 0) -> list[int]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(2, 60, (count,), generator=generator).tolist()


def test_every_row_once_per_epoch_and_order_depends_only_on_seed_and_epoch() -> None:
    sampler = LengthGroupedBatches(lengths(1000), batch_size=16, seed=7)
    epoch0 = sampler.batches(0)
    assert sorted(i for batch in epoch0 for i in batch) == list(range(1000))
    assert LengthGroupedBatches(lengths(1000), batch_size=16, seed=7).batches(0) == epoch0
    assert sampler.batches(1) != epoch0
    assert LengthGroupedBatches(lengths(1000), batch_size=16, seed=8).batches(0) != epoch0


def test_batches_group_similar_lengths() -> None:
    values = lengths(4000)
    sampler = LengthGroupedBatches(values, batch_size=32, seed=1)
    padded = sum(len(batch) * max(values[i] for i in batch) for batch in sampler.batches(0))
    random_order = torch.randperm(4000, generator=torch.Generator().manual_seed(1)).tolist()
    random_padded = sum(32 * max(values[i] for i in random_order[s : s + 32]) for s in range(0, 4000, 32))
    # Grouping pads little beyond the real tokens; random batches pad to near the maximum length.
    assert padded < 1.1 * sum(values) < random_padded


def test_ranks_share_an_epoch_without_overlap_and_equally() -> None:
    values = lengths(1001)
    shards = [LengthGroupedBatches(values, 10, seed=3, rank=r, world_size=3).batches(0) for r in range(3)]
    assert len({len(shard) for shard in shards}) == 1
    seen = [i for shard in shards for batch in shard for i in batch]
    assert len(seen) == len(set(seen))
    assert len(seen) >= 1001 - 2 * 10  # at most world_size - 1 batches are dropped


def test_bad_settings_fail_clearly() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        LengthGroupedBatches([3, 4], batch_size=0, seed=0)
    with pytest.raises(ValueError, match="rank 2"):
        LengthGroupedBatches([3, 4], batch_size=1, seed=0, rank=2, world_size=2)


def test_padding_to_the_longest_row_with_mask_and_token_types() -> None:
    rows = [
        {"input_ids": [101, 5, 102], "token_type_ids": [0, 0, 0], "labels": 1},
        {"input_ids": [101, 7, 102, 8, 102], "token_type_ids": [0, 0, 0, 1, 1], "labels": 0},
    ]
    batch = pad_batch(rows, pad_id=0, regression=False)
    assert batch["input_ids"].tolist() == [[101, 5, 102, 0, 0], [101, 7, 102, 8, 102]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    assert batch["token_type_ids"].tolist() == [[0, 0, 0, 0, 0], [0, 0, 0, 1, 1]]
    assert batch["labels"].dtype == torch.long and batch["labels"].tolist() == [1, 0]
    regression = pad_batch([{**rows[0], "labels": 3.5}], pad_id=0, regression=True)
    assert regression["labels"].dtype == torch.float


def test_columns_read_once_give_the_same_batches_as_rows() -> None:
    data = Dataset.from_dict(
        {
            "input_ids": [[101, i, 102] + [9] * (i % 4) for i in range(20)],
            "token_type_ids": [[0] * (3 + i % 4) for i in range(20)],
            "labels": [i % 2 for i in range(20)],
            "teacher_logits": [[0.1 * i, -0.1 * i] for i in range(20)],
            "line": list(range(20)),
        }
    )
    columns = Columns(data)
    assert set(columns.data) == {"input_ids", "token_type_ids", "labels", "teacher_logits"}
    indices = [3, 17, 8]
    collate = Collator(pad_id=0, regression=False)
    from_columns = collate.columns(columns.take(indices))
    from_rows = collate([data[i] for i in indices])
    assert from_columns.keys() == from_rows.keys()
    for key in from_rows:
        assert torch.equal(from_columns[key], from_rows[key]), key
    assert from_columns["teacher_logits"].shape == (3, 2)
    assert "labels" not in pad_columns(Columns(data, names=("input_ids",)).take([0]), 0, False)


def test_columns_without_input_ids_is_an_error() -> None:
    with pytest.raises(ValueError, match="input_ids"):
        Columns(Dataset.from_dict({"text": ["a"]}))
