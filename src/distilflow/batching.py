"""Length-grouped batches with dynamic padding.

Rows of similar length are batched together and each batch is padded only to its own longest row.
The shuffle is driven by an explicit ``torch.Generator`` seeded per epoch, so the data order is a pure
function of (seed, epoch) and a resumed run replays exactly the batches an uninterrupted run would see.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


class LengthGroupedBatches:
    """Shuffle, cut into mega-batches of ``batch_size * 50``, sort each by length, then cut into batches."""

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        seed: int,
        shuffle: bool = True,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.lengths = torch.as_tensor(list(lengths))
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.rank = rank
        self.world_size = world_size

    def batches(self, epoch: int) -> list[list[int]]:
        count = len(self.lengths)
        if not self.shuffle:
            order = torch.argsort(self.lengths, stable=True).tolist()
            return [order[i : i + self.batch_size] for i in range(0, count, self.batch_size)]
        generator = torch.Generator().manual_seed(self.seed + epoch)
        order = torch.randperm(count, generator=generator)
        mega = self.batch_size * 50
        batches: list[list[int]] = []
        for start in range(0, count, mega):
            chunk = order[start : start + mega]
            chunk = chunk[torch.argsort(self.lengths[chunk], descending=True, stable=True)]
            batches.extend(chunk[i : i + self.batch_size].tolist() for i in range(0, len(chunk), self.batch_size))
        # Shuffle batch order too, so the model does not see all long batches first.
        batch_order = torch.randperm(len(batches), generator=generator).tolist()
        batches = [batches[i] for i in batch_order]
        # Every rank takes the same number of batches, or DDP's all-reduce would wait forever.
        usable = len(batches) - len(batches) % self.world_size
        return batches[self.rank : usable : self.world_size]

    def __len__(self) -> int:
        return len(self.batches(0))


def pad_batch(rows: list[dict[str, Any]], pad_id: int, regression: bool) -> dict[str, torch.Tensor]:
    """Pad to the longest row in this batch; attention mask marks the real tokens."""
    width = max(len(row["input_ids"]) for row in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    token_type_ids = torch.zeros((len(rows), width), dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        n = len(row["input_ids"])
        input_ids[i, :n] = torch.as_tensor(row["input_ids"])
        token_type_ids[i, :n] = torch.as_tensor(row["token_type_ids"])
        attention_mask[i, :n] = 1
    labels = torch.tensor([row["labels"] for row in rows], dtype=torch.float if regression else torch.long)
    batch = {
        "input_ids": input_ids,
        "token_type_ids": token_type_ids,
        "attention_mask": attention_mask,
        "labels": labels,
    }
    if "teacher_logits" in rows[0]:  # distillation: the teacher's cached outputs ride along with the batch
        batch["teacher_logits"] = torch.tensor([row["teacher_logits"] for row in rows], dtype=torch.float)
    return batch


BATCH_COLUMNS = ("input_ids", "token_type_ids", "labels", "teacher_logits")


class Collator:
    def __init__(self, pad_id: int, regression: bool) -> None:
        self.pad_id = pad_id
        self.regression = regression

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return pad_batch(rows, self.pad_id, self.regression)
