"""On the embedded STS-B demo, distillation must teach the student more than word overlap knows (issue #20).

The real stages (tokenize → finetune → augment → pretrain → distill, each stage's own ``run``, in-process, MLflow in
the session's sqlite store) on the full demo, with its recipe (``flows/profiles/stsb_recipe.yaml``) over params.yaml,
from the demo as the validate stage leaves it; then the distilled student's dev Pearson, scored once, against the
Jaccard word-overlap baseline on the same dev rows. About 4-5 minutes of CPU, so it is ``slow`` (``make test-slow``).
Measured across seeds in docs/glue-demos.md ("Student start").
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from datasets import load_from_disk

from distilflow.config.loading import load_params
from distilflow.data.glue_io import read_split
from distilflow.models.loading import load_classifier, load_tokenizer
from distilflow.paths import Paths
from distilflow.registry.served_scoring import word_overlap_metric
from distilflow.stages import augment, distill, finetune, pretrain, tokenize
from distilflow.tasks import get_task
from distilflow.training.scorer import split_scorer
from tests.conftest import REPO_ROOT, deep_update

DEMO = REPO_ROOT / "data" / "demo" / "stsb"
RECIPE = REPO_ROOT / "flows" / "profiles" / "stsb_recipe.yaml"
DEMO_RUN = {"task": "stsb", "data": {"path": "data/demo/stsb"}, "distill": {"export": {"formats": []}}}
MARGIN = 0.03  # both scored once on dev: training chose its checkpoint on the held-out slice of train


@pytest.mark.slow
def test_distilled_student_beats_word_overlap_on_the_regression_demo(tmp_path: Path, mlflow_store: str) -> None:
    raw = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    (tmp_path / "params.yaml").write_text(
        yaml.safe_dump(deep_update(deep_update(raw, DEMO_RUN), yaml.safe_load(RECIPE.read_text())), sort_keys=False)
    )
    shutil.copy2(REPO_ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    params, paths = load_params(tmp_path / "params.yaml"), Paths.at(tmp_path)
    task = get_task("stsb")
    paths.validated_dir.mkdir(parents=True)
    frames = {}
    for split in task.splits:
        frame, problems = read_split(task, DEMO / f"{split}.tsv", split)
        assert problems == []
        frame.to_parquet(paths.validated_dir / f"{split}.parquet", index=False)
        frames[split] = frame

    for stage in (tokenize, finetune, augment, pretrain):
        stage.run(params, paths)
    student = distill.run(params, paths)["metrics"]

    baseline = word_overlap_metric(task, frames["dev"])
    assert student["steps"] == params.distill.max_steps
    dev = load_from_disk(str(paths.tokenized_dir))["dev"]
    pad_id = load_tokenizer(str(paths.student_dir)).pad_token_id
    on_dev = split_scorer(task, dev, 64, pad_id)(load_classifier(paths.student_dir))["pearson"]
    assert on_dev > baseline + MARGIN, (on_dev, student, baseline)
