"""The embedded pair demos: the writers reproduce the committed files byte for byte, in the layout the reader reads."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from distilflow.data.glue_io import BOM, file_columns, read_raw, read_split
from distilflow.registry.served_scoring import baseline_metric, word_overlap_metric
from distilflow.tasks import LABEL, get_task
from tests.conftest import REPO_ROOT

DEMO = REPO_ROOT / "data" / "demo"


@pytest.fixture(scope="module")
def rewritten(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each writer run into a fresh folder (no network, no state but its seed)."""
    out = {}
    for task in ("mrpc", "stsb"):
        target = tmp_path_factory.mktemp(task)
        subprocess.run(
            [sys.executable, str(DEMO / f"make_demo_{task}.py"), str(target)], check=True, capture_output=True
        )
        out[task] = target
    return out


@pytest.mark.parametrize("task_name", ["mrpc", "stsb"])
def test_writer_reproduces_the_committed_demo_in_the_glue_layout(task_name: str, rewritten: dict[str, Path]) -> None:
    task = get_task(task_name)
    frames = {}
    for split in task.splits:
        committed = DEMO / task_name / f"{split}.tsv"
        assert (rewritten[task_name] / f"{split}.tsv").read_bytes() == committed.read_bytes(), split
        header = committed.read_bytes().split(b"\n", 1)[0].decode("utf-8")
        assert header.startswith(BOM) == (task_name == "mrpc")
        raw = read_raw(task, committed, split)
        assert raw.columns == file_columns(task, split)
        frame, problems = read_split(task, committed, split)
        assert problems == []
        frames[split] = frame
    train, dev = frames["train"], frames[task.dev_splits[0]]
    assert len(train) >= 800 and len(dev) >= 200

    def pairs(frame):  # type: ignore[no-untyped-def]
        return {tuple(sorted(pair)) for pair in zip(frame[task.fields[0]], frame[task.fields[1]], strict=True)}

    for frame in (train, dev):
        assert len(pairs(frame)) == len(frame)  # no pair twice, in either order
        assert (frame[task.fields[0]] != frame[task.fields[1]]).all()
    assert not pairs(train) & pairs(dev)
    if task.is_regression:
        scores = dev[LABEL].to_numpy()
        assert scores.min() >= task.score_range[0] and scores.max() <= task.score_range[1]
        assert (np.histogram(scores, bins=5, range=task.score_range)[0] >= 0.1 * len(dev)).all()  # spread over 0-5
        assert train["id"].tolist() == [str(i) for i in range(len(train))]
        # Word overlap tells something but far from everything, and a constant tells nothing.
        assert 0.4 < word_overlap_metric(task, dev) < 0.75
        assert baseline_metric(task, dev)[0] == pytest.approx(0.0)
    else:
        for frame in (train, dev):
            assert set(frame[LABEL]) == {0, 1}
            assert 0.6 <= frame[LABEL].mean() <= 0.7  # MRPC's 2:1
            assert 0.6 <= frame[LABEL].head(60).mean() <= 0.7  # and so is a head cut (data.max_train_rows)
        # One numeric id per distinct sentence, across both files, as in MRPC.
        sentence_of: dict[str, str] = {}
        for split in task.splits:
            for line in (DEMO / "mrpc" / f"{split}.tsv").read_text(encoding="utf-8-sig").splitlines()[1:]:
                _, id1, id2, first, second = line.split("\t")
                for sentence_id, sentence in ((id1, first), (id2, second)):
                    assert sentence_id.isdigit() and sentence_of.setdefault(sentence_id, sentence) == sentence
        assert len(set(sentence_of.values())) == len(sentence_of)
