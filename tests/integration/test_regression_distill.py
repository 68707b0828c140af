"""On the embedded STS-B demo, distillation must teach the student more than word overlap knows.

A short real run of tokenize → finetune → augment → pretrain → distill (each stage's own ``run``, in-process, MLflow
in the session's sqlite store), from the demo as the validate stage leaves it, then the distilled student's dev
Pearson against the Jaccard word-overlap baseline on the same dev rows. Before regression heads started at the mean
score (issue #20) the student's Pearson wandered around 0 for hundreds of steps. It still falls short of the
baseline (docs/glue-demos.md), so the test is an expected failure, strict: it fails loudly once the student wins.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from distilflow.config import load_params
from distilflow.dev_scoring import word_overlap_metric
from distilflow.glue_io import read_split
from distilflow.paths import Paths
from distilflow.stages import augment, distill, finetune, pretrain, tokenize
from distilflow.tasks import get_task
from tests.conftest import REPO_ROOT, deep_update

DEMO = REPO_ROOT / "data" / "demo" / "stsb"
SHORT_RUN = {
    "task": "stsb",
    "data": {"path": "data/demo/stsb"},
    "finetune": {"max_steps": 30, "eval_every": 30, "checkpoint_every": 1000, "batch_size": 32},
    "augment": {"copies": 1},
    "distill": {"max_steps": 300, "eval_every": 50, "batch_size": 32, "export": {"formats": []}},
}
MARGIN = 0.03  # the student's Pearson is its best of six dev evaluations; the baseline gets no such choice


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    reason="issue #20, open: measured student Pearson 0.209 vs word overlap 0.650 (docs/glue-demos.md); "
    "the student now learns but does not yet beat the baseline",
)
def test_distilled_student_beats_word_overlap_on_the_regression_demo(tmp_path: Path, mlflow_store: str) -> None:
    raw = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(deep_update(raw, SHORT_RUN), sort_keys=False))
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
    assert student["steps"] <= 300
    assert student["best_dev_pearson"] > baseline + MARGIN, (student, baseline)
