"""The teacher's selection protocol (issue #33) against its recipe as written, per seed.

For each seed, a scratch workspace (what a clone holds) with the task's data (an embedded demo, or ``--data-dir``, a
real GLUE folder) and its GLUE recipe (``flows/profiles/glue/TASK.yaml``) runs ``distilflow stage`` ingest, validate
and tokenize, then finetune twice: once as the recipe writes it with no search (``finetune.search.trials: 0``;
``--as-written-pooling``, ``cls`` by default, the [CLS] pooler every teacher read before the protocol), once with the
search choosing ``learning_rate``, ``epochs`` and ``pooling`` on the held-out slice of train (``--trials``). Each
teacher is scored once on dev afterwards. Several seeds give the run-to-run spread, the noise a gain must clear; with
``--search-once`` only the first seed searches and the others train with its choice, so the spread is training's
alone and the cost is one search; with ``--choice`` no seed searches (a protocol run elsewhere chose). The result
records the command, every override, both dev scores per seed with a paired bootstrap of their difference over the
dev rows (the dev set's own sampling noise, beside the seeds' spread), what the search chose, how many trials it
pruned, and the CPU seconds of each finetune.

    python bench/search.py [--task mrpc] [--trials 6] [--seeds 1,2] [--out bench/results/search-mrpc.json]
    python bench/search.py --task cola --data-dir ../shared/data/glue/CoLA --trials 10 --seeds 1,2,3 --search-once
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

from common import RESULTS_DIR, ROOT, Settings, dev_predictions, log, write_result
from distilflow.metrics import compute_glue_metrics
from distilflow.orchestration.scratch_workspace import make_workspace, run_checked, subprocess_env
from distilflow.paths import Paths
from distilflow.registry.bootstrap import paired_bootstrap
from distilflow.tasks import get_task

PREPARE = ("ingest", "validate", "tokenize")


def overrides(task: str, data_dir: Path | None) -> dict[str, Any]:
    """The data, the task's recipe, no student work (only the teacher is compared)."""
    recipe = yaml.safe_load((Paths.at(ROOT).glue_recipes_dir / f"{task}.yaml").read_text(encoding="utf-8")) or {}
    data = str(data_dir.resolve()) if data_dir else f"data/demo/{task}"
    return {**recipe, "task": task, "data": {"path": data}}


def finetune(
    workspace: Path, env: dict[str, str], params: dict[str, Any], trials: int, pinned: dict[str, Any]
) -> dict[str, Any]:
    """``distilflow stage finetune`` with ``finetune.search.trials`` and ``pinned`` finetune settings; its metrics,
    seconds and dev score."""
    params = {**params, "finetune": {**params["finetune"], **pinned}}
    params["finetune"]["search"] = {**params["finetune"]["search"], "trials": trials}
    Paths.at(workspace).params_file.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    began = time.perf_counter()
    run_checked(["distilflow", "stage", "finetune"], workspace, env=env, timeout=3600)
    seconds = round(time.perf_counter() - began, 1)
    metrics = json.loads((workspace / "metrics" / "finetune.json").read_text(encoding="utf-8"))
    task = get_task(params["task"])
    predictions, references = dev_predictions(workspace, "teacher", task.name)
    dev = compute_glue_metrics(task.name, predictions.tolist(), references.tolist())[task.primary_metric]
    return {"dev": dev, "seconds": seconds, "metrics": metrics, "dev_answers": (predictions, references)}


def paired(task: str, searched: dict[str, Any], as_written: dict[str, Any]) -> dict[str, Any]:
    """Searched minus as written on the same dev rows, 1,000 paired resamples: the dev set's sampling noise."""
    (mine, references), (theirs, _) = searched.pop("dev_answers"), as_written.pop("dev_answers")
    return paired_bootstrap(get_task(task).primary_metric, mine, theirs, references).as_dict()


SELECTED = ("learning_rate", "epochs", "pooling")


def one_seed(settings: Settings, seed: int, trials: int, choice: dict[str, Any] | None) -> dict[str, Any]:
    """The recipe as written and the protocol, one seed; ``choice``: the protocol's settings from an earlier seed's
    search, trained again without searching."""
    scratch = Path(tempfile.mkdtemp(prefix=f"search-{seed}-"))
    try:
        workspace = make_workspace(ROOT, scratch, {})
        params = {**settings.params.model_dump(by_alias=True), "seed": seed}
        Paths.at(workspace).params_file.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
        env = subprocess_env()
        env["PYTHONPATH"] = str(workspace / "src") + os.pathsep + env.get("PYTHONPATH", "")
        for stage in PREPARE:
            run_checked(["distilflow", "stage", stage], workspace, env=env, timeout=1800)
        as_written = finetune(workspace, env, params, 0, {"pooling": settings.args.as_written_pooling})
        log(f"seed {seed}: recipe as written dev {as_written['dev']:.4f} in {as_written['seconds']} s")
        searched = (
            finetune(workspace, env, params, 0, choice) if choice else finetune(workspace, env, params, trials, {})
        )
        chosen = {k: v for k, v in searched["metrics"].items() if k.startswith(("selected_", "search_"))}
        log(f"seed {seed}: searched dev {searched['dev']:.4f} in {searched['seconds']} s, {chosen or choice}")
        compared = paired(params["task"], searched, as_written)
        log(f"seed {seed}: searched - as written {compared['difference']:+.4f}, P(better) {compared['p_better']:.3f}")
        return {
            "seed": seed,
            "as_written": as_written,
            "searched": searched,
            "dev_paired_bootstrap": compared,
            "search": chosen,
            "pinned": choice,
        }
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def number_or_word(text: str) -> float | str:
    """``1e-4`` is a number (YAML 1.1 would read it as a string); ``cls`` is a word."""
    try:
        return float(text)
    except ValueError:
        return text


def searched_cost_ratios(runs: list[dict[str, Any]]) -> list[float]:
    """Searched finetune seconds over the recipe's, for the seeds that searched (a pinned choice costs no search)."""
    return [r["searched"]["seconds"] / r["as_written"]["seconds"] for r in runs if r["pinned"] is None]


def spread(scores: list[float]) -> dict[str, float]:
    """Mean, range and sample standard deviation over seeds: the run-to-run noise."""
    stdev = statistics.stdev(scores) if len(scores) > 1 else 0.0
    return {"mean": statistics.fmean(scores), "spread": max(scores) - min(scores), "stdev": stdev}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="mrpc", help="a GLUE task: its embedded demo unless --data-dir")
    parser.add_argument("--data-dir", type=Path, default=None, help="the task's folder (train.tsv, dev.tsv)")
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--seeds", default="1,2", help="comma-separated; the spread across them is the noise")
    parser.add_argument("--search-once", action="store_true", help="later seeds retrain the first seed's choice")
    parser.add_argument(
        "--choice",
        default=None,
        help="no search: every seed trains these settings, e.g. learning_rate=2e-4,epochs=3,pooling=mean "
        "(what a protocol run chose: its metrics/finetune.json selected_*)",
    )
    parser.add_argument("--as-written-pooling", default="cls", help="finetune.pooling of the recipe as written")
    parser.add_argument("--out", type=Path, default=None)
    known, _ = parser.parse_known_args(argv)
    settings = Settings.parse("search.py", parser, argv, (), overrides(known.task, known.data_dir))
    args = settings.args
    suffix = "-real" if args.data_dir else ""
    out = args.out or RESULTS_DIR / f"search-{args.task}{suffix}.json"
    started = time.perf_counter()
    runs: list[dict[str, Any]] = []
    given = dict(pair.split("=", 1) for pair in args.choice.split(",")) if args.choice else None
    for seed in args.seeds.split(","):
        choice = {name: number_or_word(value) for name, value in given.items()} if given else None
        if args.search_once and runs:
            choice = {name: runs[0]["search"][f"selected_{name}"] for name in SELECTED}
        runs.append(one_seed(settings, int(seed), args.trials, choice))
    written = [run["as_written"]["dev"] for run in runs]
    searched = [run["searched"]["dev"] for run in runs]
    result = {
        **settings.provenance(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "task": args.task,
        "metric": get_task(args.task).primary_metric,
        "trials": args.trials,
        "runs": runs,
        "dev_as_written": spread(written),
        "dev_searched": spread(searched),
        "cost_ratio": statistics.fmean(ratios) if (ratios := searched_cost_ratios(runs)) else None,
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    write_result(out, result)
    log(f"as written {result['dev_as_written']}, searched {result['dev_searched']}: {out}")


if __name__ == "__main__":
    main()
