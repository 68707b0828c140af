"""Length-grouped batches with dynamic padding.

Rows of similar length are batched together and each batch is padded only to its own longest row.
The shuffle is driven by an explicit ``torch.Generator`` seeded per epoch, so the data order is a pure
function of (seed, epoch) and a resumed run replays exactly the batches an uninterrupted run would see.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

BATCH_COLUMNS = ("input_ids", "token_type_ids", "labels", "teacher_logits")


class LengthGroupedBatches:
    """Shuffle, cut into mega-batches of ``batch_size * 50``, sort each by length, then cut into batches.

    With ``exact=True`` the rows of each length are shuffled and cut into full batches of that length alone
    (no padding at all); the leftovers of every length are pooled, sorted and cut like the rest.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        seed: int,
        shuffle: bool = True,
        rank: int = 0,
        world_size: int = 1,
        exact: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside a world of {world_size} processes")
        self.lengths = torch.as_tensor(list(lengths))
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.rank = rank
        self.world_size = world_size
        self.exact = exact

    def _exact_batches(self, generator: torch.Generator) -> list[list[int]]:
        shuffled = torch.randperm(len(self.lengths), generator=generator)
        ordered = shuffled[torch.argsort(self.lengths[shuffled], stable=True)]  # by length, shuffled within one
        batches: list[list[int]] = []
        leftovers: list[int] = []
        _, counts = torch.unique_consecutive(self.lengths[ordered], return_counts=True)
        for start, count in zip(torch.cumsum(counts, 0) - counts, counts.tolist(), strict=True):
            rows = ordered[int(start) : int(start) + count].tolist()
            full = count - count % self.batch_size
            batches.extend(rows[i : i + self.batch_size] for i in range(0, full, self.batch_size))
            leftovers.extend(rows[full:])  # stays sorted by length, since the lengths ascend
        batches.extend(leftovers[i : i + self.batch_size] for i in range(0, len(leftovers), self.batch_size))
        return batches

    def batches(self, epoch: int) -> list[list[int]]:
        count = len(self.lengths)
        if not self.shuffle:
            order = torch.argsort(self.lengths, stable=True).tolist()
            batches = [order[i : i + self.batch_size] for i in range(0, count, self.batch_size)]
        elif self.exact:
            generator = torch.Generator().manual_seed(self.seed + epoch)
            batches = self._exact_batches(generator)
            batch_order = torch.randperm(len(batches), generator=generator).tolist()
            batches = [batches[i] for i in batch_order]
        else:
            generator = torch.Generator().manual_seed(self.seed + epoch)
            shuffled = torch.randperm(count, generator=generator)
            mega = self.batch_size * 50
            batches = []
            for start in range(0, count, mega):
                chunk = shuffled[start : start + mega]
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
    columns = {key: [row[key] for row in rows] for key in rows[0] if key in BATCH_COLUMNS}
    return pad_columns(columns, pad_id, regression)


def pad_columns(
    columns: dict[str, list[Any]], pad_id: int, regression: bool, mask_if_full: bool = True
) -> dict[str, torch.Tensor]:
    """Like :func:`pad_batch`, from column lists: one numpy fill per row, tensors made once per batch.

    ``mask_if_full=False`` leaves out the attention mask of a batch with no padding: an all-ones mask changes
    nothing but still costs the model a mask to build and attention a masked kernel.
    """
    ids = columns["input_ids"]
    types = columns.get("token_type_ids")
    width = max(len(row) for row in ids)
    input_ids = np.full((len(ids), width), pad_id, dtype=np.int64)
    token_type_ids = np.zeros((len(ids), width), dtype=np.int64)
    attention_mask = np.zeros((len(ids), width), dtype=np.int64)
    for i, row in enumerate(ids):
        n = len(row)
        input_ids[i, :n] = row
        if types is not None:
            token_type_ids[i, :n] = types[i]
        attention_mask[i, :n] = 1
    batch = {"input_ids": torch.from_numpy(input_ids), "token_type_ids": torch.from_numpy(token_type_ids)}
    if mask_if_full or any(len(row) != width for row in ids):
        batch["attention_mask"] = torch.from_numpy(attention_mask)
    if "labels" in columns:
        batch["labels"] = torch.tensor(columns["labels"], dtype=torch.float if regression else torch.long)
    if "teacher_logits" in columns:  # distillation: the teacher's cached outputs ride along with the batch
        batch["teacher_logits"] = torch.tensor(columns["teacher_logits"], dtype=torch.float)
    return batch


class Columns:
    """The batch columns of a dataset, read out of Arrow once.

    Fetching rows one at a time through ``Dataset.__getitem__`` costs tens of microseconds each, which at
    SST-2's ~13 tokens per row is a visible share of a CPU training step; plain lists cost nothing to index.
    """

    def __init__(self, dataset: Any, names: Sequence[str] = BATCH_COLUMNS) -> None:
        present = [c for c in names if c in dataset.column_names]
        if "input_ids" not in present:
            raise ValueError(f"dataset has no input_ids column (columns: {', '.join(dataset.column_names)})")
        self.data: dict[str, list[Any]] = dataset.select_columns(present).to_dict()

    def __len__(self) -> int:
        return len(self.data["input_ids"])

    def take(self, indices: Sequence[int]) -> dict[str, list[Any]]:
        return {key: [values[i] for i in indices] for key, values in self.data.items()}


class Collator:
    def __init__(self, pad_id: int, regression: bool, mask_if_full: bool = True) -> None:
        self.pad_id = pad_id
        self.regression = regression
        self.mask_if_full = mask_if_full

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return pad_batch(rows, self.pad_id, self.regression)

    def columns(self, columns: dict[str, list[Any]]) -> dict[str, torch.Tensor]:
        return pad_columns(columns, self.pad_id, self.regression, self.mask_if_full)


def logits_by_length(
    dataset: Any,
    batch_size: int,
    pad_id: int,
    run_batch: Callable[[dict[str, torch.Tensor]], np.ndarray],
    on_batch: Callable[[int], object] | None = None,
) -> np.ndarray:
    """``run_batch``'s logits over ``dataset``, in its row order, from batches of rows sorted by length.

    Sorting first means each batch pads to a length close to all of its rows, so little time goes on padding;
    the eager model (``inference.predict_logits``) and ONNX Runtime (``teacher_onnx.onnx_logits``) share it.
    ``on_batch`` hears each batch's row count (a progress bar).
    """
    columns = Columns(dataset, names=("input_ids", "token_type_ids"))
    order = np.argsort(np.asarray(dataset["length"]), kind="stable")
    outputs: list[np.ndarray] = []
    for start in range(0, len(order), batch_size):
        batch = pad_columns(columns.take(order[start : start + batch_size].tolist()), pad_id, regression=False)
        outputs.append(run_batch(batch))
        if on_batch is not None:
            on_batch(len(batch["input_ids"]))
    stacked = np.concatenate(outputs) if outputs else np.zeros((0, 1), dtype=np.float32)
    result = np.empty_like(stacked)
    result[order] = stacked
    return result
