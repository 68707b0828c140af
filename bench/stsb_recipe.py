"""The STS-B recipe (issue #20): the real stages on the embedded STS-B demo, and the student against word overlap.

A scratch workspace (distilflow.orchestration.scratch_workspace: what a clone holds) gets params.yaml changed by this
script's
``OVERRIDES`` (the demo, no exports) plus the recipe in ``flows/profiles/stsb_recipe.yaml``, then the flags below
and ``--set KEY=VALUE``; ``distilflow stage NAME`` runs for ingest, validate, tokenize, finetune, augment, pretrain
and distill, in pipeline order, on the full demo rows (1,200 train / 300 dev). The result file records the command,
every override, the teacher's and the student's best dev Pearson (and Spearman at that step), the Jaccard
word-overlap baseline on the same dev rows and the time each stage took.

    python bench/stsb_recipe.py [--out bench/results/stsb-recipe.json] [--keep DIR] [--set KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from common import RESULTS_DIR, ROOT, ParamFlag, Settings, dev_scores, log, write_result
from distilflow.data.glue_io import read_split
from distilflow.orchestration.scratch_workspace import deep_update, make_workspace, run_checked, subprocess_env
from distilflow.paths import Paths
from distilflow.registry.served_scoring import word_overlap_metric
from distilflow.tasks import get_task

PROFILE = Paths.at(ROOT).profiles_dir / "stsb_recipe.yaml"
STAGES = ("ingest", "validate", "tokenize", "finetune", "augment", "pretrain", "distill")
# The demo, full rows; no student exports (they do not change the dev Pearson); then the recipe.
DEMO_OVERRIDES: dict[str, Any] = {
    "task": "stsb",
    "data": {"path": "data/demo/stsb"},
    "distill": {"export": {"formats": []}},
}
OVERRIDES: dict[str, Any] = deep_update(DEMO_OVERRIDES, yaml.safe_load(PROFILE.read_text(encoding="utf-8")) or {})
PARAM_FLAGS = (
    ParamFlag("--copies", "augment.copies", int, "rewrites per training pair"),
    ParamFlag("--distill-steps", "distill.max_steps", int),
    ParamFlag("--learning-rate", "distill.learning_rate", float),
    ParamFlag("--freeze-embeddings", "distill.freeze_word_embeddings", bool),
    ParamFlag("--seed", "seed", int),
)


def best_row(curve: Path, step: int) -> dict[str, float]:
    """The held-out curve's row at ``step`` (the best one), as numbers."""
    with curve.open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if int(row["step"]) == step:
                return {key: float(value) for key, value in row.items()}
    raise SystemExit(f"{curve}: no row for step {step}")


def scores(workspace: Path, stage: str) -> dict[str, Any]:
    metrics = json.loads((workspace / "metrics" / f"{stage}.json").read_text(encoding="utf-8"))
    row = best_row(workspace / "plots" / f"{stage}_heldout.csv", int(metrics["best_step"]))
    on_dev = dev_scores(workspace, "teacher" if stage == "finetune" else "student", "stsb")
    return {
        "dev_pearson": on_dev["pearson"],
        "dev_spearman": on_dev["spearmanr"],
        "heldout_pearson": metrics["best_heldout_pearson"],
        "heldout_spearman": row["heldout_spearmanr"],
        "best_step": metrics["best_step"],
        "steps": metrics["steps"],
        "train_seconds": metrics["train_seconds"],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "stsb-recipe.json")
    parser.add_argument("--keep", type=Path, default=None, help="build the workspace here and keep it")
    settings = Settings.parse("stsb_recipe.py", parser, argv, PARAM_FLAGS, OVERRIDES)
    args, params = settings.args, settings.params
    started = time.perf_counter()
    scratch = Path(tempfile.mkdtemp(prefix="stsb-recipe-")) if args.keep is None else args.keep
    workspace = make_workspace(ROOT, scratch, {})
    # The settings in full, as parsed and checked (params.yaml, the overrides, the flags).
    Paths.at(workspace).params_file.write_text(
        yaml.safe_dump(params.model_dump(by_alias=True), sort_keys=False), encoding="utf-8"
    )
    env = subprocess_env()
    env["PYTHONPATH"] = str(workspace / "src") + os.pathsep + env.get("PYTHONPATH", "")
    stage_seconds: dict[str, float] = {}
    try:
        for stage in STAGES:
            log(f"distilflow stage {stage}")
            began = time.perf_counter()
            run_checked(["distilflow", "stage", stage], workspace, env=env, timeout=1800)
            stage_seconds[stage] = round(time.perf_counter() - began, 1)
            log(f"{stage}: {stage_seconds[stage]} s")
        task = get_task(params.task)
        dev, _ = read_split(task, ROOT / params.data.path / "dev.tsv", "dev")
        result = {
            **settings.provenance(),
            "recipe_file": str(PROFILE.relative_to(ROOT)),
            "recipe": yaml.safe_load(PROFILE.read_text(encoding="utf-8")),
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "dev_rows": len(dev),
            "teacher": scores(workspace, "finetune"),
            "student": scores(workspace, "distill"),
            "word_overlap_dev_pearson": word_overlap_metric(task, dev),
            "augment": json.loads((workspace / "metrics" / "augment.json").read_text(encoding="utf-8")),
            "stage_seconds": stage_seconds,
            "total_seconds": round(time.perf_counter() - started, 1),
        }
        result["student_beats_overlap"] = result["student"]["dev_pearson"] > result["word_overlap_dev_pearson"]
        write_result(args.out, result)
        log(
            f"teacher {result['teacher']['dev_pearson']:.3f}, student {result['student']['dev_pearson']:.3f}, "
            f"word overlap {result['word_overlap_dev_pearson']:.3f}: {args.out}"
        )
    finally:
        if args.keep is None:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
