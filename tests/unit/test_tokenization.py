"""The tokenize stage: pair encoding, truncation, the content hash, and reuse of an unchanged output."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
from datasets import load_from_disk

from distilflow.config.loading import parse_params
from distilflow.models.loading import load_tokenizer, resolve_teacher
from distilflow.paths import Paths
from distilflow.stages import tokenize as tokenization
from distilflow.tasks import LABEL, LINE, get_task
from tests.conftest import REPO_ROOT


@pytest.fixture(scope="module")
def tokenizer():  # type: ignore[no-untyped-def]
    return load_tokenizer(resolve_teacher("packaged-minilm"))


def pairs() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "sentence1": ["the cat sat", "a b c d e f g h i j k l m n o p"],
            "sentence2": ["on the mat", "q r s t u v w x y z"],
            LABEL: [1, 0],
            LINE: [2, 3],
        }
    )


def test_pairs_are_cls_a_sep_b_sep_with_token_types(tokenizer) -> None:  # type: ignore[no-untyped-def]
    row = tokenization.encode(pairs(), get_task("mrpc"), tokenizer, max_length=64)[0]
    a = tokenizer("the cat sat", add_special_tokens=False)["input_ids"]
    b = tokenizer("on the mat", add_special_tokens=False)["input_ids"]
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    assert row["input_ids"] == [cls, *a, sep, *b, sep]
    assert row["token_type_ids"] == [0] * (len(a) + 2) + [1] * (len(b) + 1)
    assert row["length"] == len(row["input_ids"]) and row["labels"] == 1 and row[LINE] == 2


def test_truncation_to_max_length_keeps_both_segments(tokenizer) -> None:  # type: ignore[no-untyped-def]
    encoded = tokenization.encode(pairs(), get_task("mrpc"), tokenizer, max_length=12)
    long = encoded[1]
    assert long["length"] == 12 and long["input_ids"][-1] == tokenizer.sep_token_id
    assert 1 in long["token_type_ids"], "longest-first truncation shortens the longer text, not the pair"
    assert "attention_mask" not in encoded.column_names  # padding happens per batch, at training time


def test_a_slow_tokenizer_or_a_missing_column_is_refused(tokenizer) -> None:  # type: ignore[no-untyped-def]
    class Slow:
        is_fast = False

    with pytest.raises(ValueError, match="fast"):
        tokenization.encode(pairs(), get_task("mrpc"), Slow(), 16)
    with pytest.raises(ValueError, match="sentence2"):
        tokenization.encode(pairs().drop(columns=["sentence2"]), get_task("mrpc"), tokenizer, 16)


def test_content_hash_follows_text_labels_tokenizer_settings_and_task() -> None:
    folder = resolve_teacher("packaged-minilm")
    frames = {"train": pairs()}
    base = tokenization.content_hash(frames, folder, 128, "mrpc")
    assert tokenization.content_hash({"train": pairs()}, folder, 128, "mrpc") == base
    assert tokenization.content_hash(frames, folder, 64, "mrpc") != base
    assert tokenization.content_hash(frames, folder, 128, "qqp") != base
    changed = pairs()
    changed.loc[0, "sentence2"] = "on the rug"
    assert tokenization.content_hash({"train": changed}, folder, 128, "mrpc") != base
    relabelled = pairs()
    relabelled.loc[0, LABEL] = 0
    assert tokenization.content_hash({"train": relabelled}, folder, 128, "mrpc") != base


def test_stage_writes_arrow_meta_and_histogram_then_reuses_an_unchanged_output(tmp_path: Path) -> None:
    paths = Paths.at(tmp_path)
    # A stage logs its dvc.yaml params (tracking.runs.stage_run), so the project has the pipeline's dvc.yaml.
    shutil.copy(REPO_ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    paths.validated_dir.mkdir(parents=True)
    frame = pd.DataFrame(
        {"sentence": ["a fine film", "dull , dull , dull", "it works"], LABEL: [1, 0, 1], LINE: [2, 3, 4]}
    )
    frame.to_parquet(paths.validated_dir / "train.parquet", index=False)
    frame.iloc[:2].to_parquet(paths.validated_dir / "dev.parquet", index=False)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    params = parse_params({"task": "sst2", "tokenize": {"max_length": 32}})

    first = tokenization.run(params, paths)
    assert first["reused"] is False
    data = load_from_disk(str(paths.tokenized_dir))
    # One positive row is held out (the lone negative stays in train, where a model can learn it); dev is whole.
    assert data["train"].num_rows == 2 and data["holdout"].num_rows == 1 and data["dev"].num_rows == 2
    assert data["holdout"]["labels"] == [1] and sorted([*data["train"]["line"], *data["holdout"]["line"]]) == [2, 3, 4]
    meta = json.loads((paths.tokenized_meta_file).read_text())
    assert meta["content_hash"] == first["meta"]["content_hash"] and meta["max_length"] == 32
    assert meta["holdout"]["lines"] == list(data["holdout"]["line"]) and meta["holdout"]["seed"] == params.seed
    histogram = pd.read_csv(paths.plots_dir / "token_lengths.csv")
    assert histogram["examples"].sum() == 2 and list(histogram.columns) == ["tokens", "examples"]
    written = (paths.tokenized_dir / "dataset_dict.json").stat().st_mtime_ns

    again = tokenization.run(params, paths)
    assert again["reused"] is True and again["meta"]["content_hash"] == meta["content_hash"]
    assert (paths.tokenized_dir / "dataset_dict.json").stat().st_mtime_ns == written

    shorter = tokenization.run(parse_params({"task": "sst2", "tokenize": {"max_length": 8}}), paths)
    assert shorter["reused"] is False and shorter["meta"]["content_hash"] != meta["content_hash"]
