"""Training never reads dev: with dev's labels shuffled, the teacher and the student come out bit for bit the same.

Early stopping, the best checkpoint and which exports may be served are choices made on the held-out slice of train
(tokenize's ``holdout`` split); dev is read once, by evaluate, for the reported number. Issue #33 asks for exactly
this plant: a dev file whose labels are shuffled must not change what training chooses.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import yaml

from tests.conftest import committed_copy, run


def model_digest(folder: Path) -> str:
    return hashlib.md5((folder / "model.safetensors").read_bytes()).hexdigest()


def test_shuffled_dev_labels_change_no_trained_weight(pipeline_workspace: Path, tmp_path: Path) -> None:
    root = committed_copy(pipeline_workspace, tmp_path / "shuffled")
    dev_file = root / "data" / "demo" / "sst2" / "dev.tsv"
    dev = pd.read_csv(dev_file, sep="\t", quoting=3)
    shuffled = dev.assign(label=dev["label"].sample(frac=1.0, random_state=7).to_numpy())
    limit = yaml.safe_load((root / "params.yaml").read_text())["data"]["max_dev_rows"]
    assert (shuffled["label"][:limit] != dev["label"][:limit]).sum() >= limit // 4  # the rows ingest keeps differ
    shuffled.to_csv(dev_file, sep="\t", index=False, quoting=3)

    ran = run(["dvc", "repro", "distill"], root).stdout
    assert "Running stage 'finetune'" in ran and "Running stage 'distill'" in ran, ran  # retrained, not skipped

    for model in ("teacher", "student"):
        assert model_digest(root / "models" / model) == model_digest(pipeline_workspace / "models" / model), model
    for stage in ("finetune", "distill"):
        before, after = (
            json.loads((base / "metrics" / f"{stage}.json").read_text()) for base in (pipeline_workspace, root)
        )
        assert (
            after["best_step"] == before["best_step"]
            and after["best_heldout_accuracy"] == before["best_heldout_accuracy"]
        )
    meta = [json.loads((base / "data" / "tokenized" / "meta.json").read_text()) for base in (pipeline_workspace, root)]
    assert meta[0]["holdout"]["lines"] == meta[1]["holdout"]["lines"] and meta[0]["holdout"]["rows"] > 0
    assert meta[0]["content_hash"] != meta[1]["content_hash"]  # dev did change under the teacher
