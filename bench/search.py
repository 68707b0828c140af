"""The teacher's selection protocol (issue #33) against its recipe as written, on an embedded demo, per seed.

For each seed, a scratch workspace (what a clone holds) with the task's demo and its GLUE recipe
(``flows/profiles/glue/TASK.yaml``) runs ``distilflow stage`` ingest, validate and tokenize, then finetune twice:
once as the recipe writes it (``finetune.search.trials: 0``), once with the search choosing ``learning_rate`` and
``epochs`` on the held-out slice of train (``--trials``). Each teacher is scored once on dev afterwards. Several seeds
give the run-to-run spread of the recipe as written, the noise a gain must clear. The result records the command,
every override, both dev scores per seed, what the search chose, how many trials it pruned, and the CPU seconds of
each finetune.

    python bench/search.py [--task mrpc] [--trials 6] [--seeds 1,2] [--out bench/results/search-mrpc.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from common import RESULTS_DIR, ROOT, Settings, dev_scores, log, write_result
from distilflow.orchestration.scratch_workspace import make_workspace, run_checked, subprocess_env
from distilflow.paths import Paths
from distilflow.tasks import get_task

PREPARE = ("ingest", "validate", "tokenize")


def overrides(task: str) -> dict[str, Any]:
    """The demo, its recipe, no student work (only the teacher is compared)."""
    recipe = yaml.safe_load((Paths.at(ROOT).glue_recipes_dir / f"{task}.yaml").read_text(encoding="utf-8")) or {}
    return {**recipe, "task": task, "data": {"path": f"data/demo/{task}"}}


def finetune(workspace: Path, env: dict[str, str], params: dict[str, Any], trials: int) -> dict[str, Any]:
    """``distilflow stage finetune`` with ``finetune.search.trials`` set; its metrics, seconds and dev score."""
    params["finetune"].setdefault("search", {})["trials"] = trials
    Paths.at(workspace).params_file.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    began = time.perf_counter()
    run_checked(["distilflow", "stage", "finetune"], workspace, env=env, timeout=3600)
    seconds = round(time.perf_counter() - began, 1)
    metrics = json.loads((workspace / "metrics" / "finetune.json").read_text(encoding="utf-8"))
    task = get_task(params["task"])
    dev = dev_scores(workspace, "teacher", task.name)[task.primary_metric]
    return {"dev": dev, "seconds": seconds, "metrics": metrics}


def one_seed(settings: Settings, seed: int, trials: int) -> dict[str, Any]:
    scratch = Path(tempfile.mkdtemp(prefix=f"search-{seed}-"))
    try:
        workspace = make_workspace(ROOT, scratch, {})
        params = {**settings.params.model_dump(by_alias=True), "seed": seed}
        Paths.at(workspace).params_file.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
        env = subprocess_env()
        env["PYTHONPATH"] = str(workspace / "src") + os.pathsep + env.get("PYTHONPATH", "")
        for stage in PREPARE:
            run_checked(["distilflow", "stage", stage], workspace, env=env, timeout=1800)
        as_written = finetune(workspace, env, params, 0)
        log(f"seed {seed}: recipe as written dev {as_written['dev']:.4f} in {as_written['seconds']} s")
        searched = finetune(workspace, env, params, trials)
        chosen = {k: v for k, v in searched["metrics"].items() if k.startswith(("selected_", "search_"))}
        log(f"seed {seed}: searched dev {searched['dev']:.4f} in {searched['seconds']} s, {chosen}")
        return {"seed": seed, "as_written": as_written, "searched": searched, "search": chosen}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="mrpc", help="an embedded demo: sst2, mrpc or stsb")
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--seeds", default="1,2", help="comma-separated; the spread across them is the noise")
    parser.add_argument("--out", type=Path, default=None)
    known, _ = parser.parse_known_args(argv)
    settings = Settings.parse("search.py", parser, argv, (), overrides(known.task))
    args = settings.args
    out = args.out or RESULTS_DIR / f"search-{args.task}.json"
    started = time.perf_counter()
    runs = [one_seed(settings, int(seed), args.trials) for seed in args.seeds.split(",")]
    written = [run["as_written"]["dev"] for run in runs]
    searched = [run["searched"]["dev"] for run in runs]
    result = {
        **settings.provenance(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "task": args.task,
        "metric": get_task(args.task).primary_metric,
        "trials": args.trials,
        "runs": runs,
        "dev_as_written": {"mean": statistics.fmean(written), "spread": max(written) - min(written)},
        "dev_searched": {"mean": statistics.fmean(searched), "spread": max(searched) - min(searched)},
        "cost_ratio": statistics.fmean(r["searched"]["seconds"] / r["as_written"]["seconds"] for r in runs),
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    write_result(out, result)
    log(f"as written {result['dev_as_written']}, searched {result['dev_searched']}: {out}")


if __name__ == "__main__":
    main()
