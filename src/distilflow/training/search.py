"""Choosing training settings by a protocol: Optuna trials scored on the held-out slice of train, never on dev.

BERT §4.1 selects each task's learning rate from a grid, on dev. Here the grid includes the larger rates small models
want, the score is the held-out slice's (data.holdout), and each trial is a short run (``trial_share`` of a full
run's steps) that Optuna's successive-halving pruner stops at an evaluation where it falls behind the others. When
the trials can cover every combination of the space, they do (Optuna's grid sampler, in a seeded order); otherwise a
seeded TPE sampler picks them. Either way the same data and settings choose the same values.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from distilflow.tracking.runs import StageRun

SELECTED = "selected_"  # a metrics file's key prefix for what a search chose (summary, read_summary)
Report = Callable[[float], None]  # a trial's score at one evaluation, in order; may stop the trial
TrialFn = Callable[[dict[str, Any], Report], float]  # settings, report → the trial's best held-out score


@dataclass
class TrialRecord:
    number: int
    settings: dict[str, Any]
    state: str  # COMPLETE or PRUNED
    score: float | None  # the best held-out score it reached (pruned: the last one reported)
    evaluations: int


@dataclass
class SearchResult:
    chosen: dict[str, Any]
    best_score: float
    trials: list[TrialRecord] = field(default_factory=list)
    seconds: float = 0.0
    sampler: str = "tpe"  # grid when the trials cover the whole space

    def summary(self, prefix: str) -> dict[str, Any]:
        """Flat numbers for a stage's metrics file: the chosen values, the best score, the trials' fate."""
        pruned = sum(trial.state == "PRUNED" for trial in self.trials)
        return {
            **{f"{prefix}{SELECTED}{name}": value for name, value in self.chosen.items()},
            f"{prefix}search_best_heldout": self.best_score,
            f"{prefix}search_trials": len(self.trials),
            f"{prefix}search_pruned": pruned,
            f"{prefix}search_repeats": sum(trial.evaluations == 0 for trial in self.trials),  # drawn again, not trained
            f"{prefix}search_seconds": self.seconds,
            f"{prefix}search_grid": self.sampler == "grid",
        }

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_summary(metrics: dict[str, Any], prefix: str = "") -> tuple[dict[str, Any], int | None]:
    """What :meth:`SearchResult.summary` wrote in a metrics file, read back: the chosen values and the number of
    trials (empty and None when the stage trained as written)."""
    chosen = {
        key.removeprefix(f"{prefix}{SELECTED}"): value
        for key, value in metrics.items()
        if key.startswith(f"{prefix}{SELECTED}")
    }
    return chosen, metrics.get(f"{prefix}search_trials")


Scorer = Callable[[Any], dict[str, float]]  # a model → its scores on the held-out slice (training.loop.EvalFn)


def reporting(score: Scorer, metric: str, report: Report) -> Scorer:
    """A trial's scorer: scores as ``score`` does, and reports ``metric`` to the search (which may stop the trial)."""

    def scored(model: Any) -> dict[str, float]:
        scores = score(model)
        report(scores[metric])
        return scores

    return scored


def trial_steps(
    rows: int, batch_size: int, grad_accum_steps: int, epochs: float, share: float, max_steps: int | None = None
) -> int:
    """Optimizer steps of one trial: ``share`` of the full run's (``epochs``, or ``max_steps`` where fewer)."""
    per_epoch = math.ceil(rows / (batch_size * grad_accum_steps))
    full = math.ceil(epochs * per_epoch)
    return max(1, math.ceil(share * min(full, max_steps or full)))


def _study(space: dict[str, list[Any]], trials: int, seed: int, maximize: bool, evaluations: int) -> Any:
    """An Optuna study: the grid sampler when ``trials`` cover the space, else TPE; successive-halving pruning."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if math.prod(len(values) for values in space.values()) <= trials:
        sampler: optuna.samplers.BaseSampler = optuna.samplers.GridSampler(space, seed=seed)
    else:  # TPE samples its first trials at random (10 by default); half the budget leaves it room to learn
        sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(2, trials // 2))
    return optuna.create_study(
        direction="maximize" if maximize else "minimize",
        sampler=sampler,
        pruner=optuna.pruners.SuccessiveHalvingPruner(
            min_resource=max(1, evaluations // 4) if evaluations else "auto", reduction_factor=3
        ),
    )


def _announce(record: TrialRecord, trials: int, repeats: int | None = None) -> TrialRecord:
    """One line per trial as it ends, so a person watching a long search sees where it stands."""
    settings = ", ".join(f"{name} {value}" for name, value in record.settings.items())
    fate = "pruned" if record.state == "PRUNED" else "complete"
    how = f"after {record.evaluations} evaluations"
    if repeats is not None:
        how = f"as trial {repeats + 1}, not trained again"
    line = f"search: trial {record.number + 1}/{trials} ({settings}): held-out {record.score:.4f}, {fate} {how}"
    print(line, flush=True)
    return record


def run_search(
    space: dict[str, list[Any]],
    run_trial: TrialFn,
    trials: int,
    seed: int,
    greater_is_better: bool,
    evaluations_per_trial: int = 0,
) -> SearchResult:
    """Up to ``trials`` Optuna trials over ``space`` (each value list a categorical choice); returns the best
    completed one. A space of at most ``trials`` combinations is run whole, each combination once.

    The first pruning rung is a quarter of the way into a trial (``evaluations_per_trial``; 0: Optuna's guess, the
    first evaluation): a score after a few warm-up steps says more about the learning rate's speed than its end."""
    import optuna

    study = _study(space, trials, seed, greater_is_better, evaluations_per_trial)
    grid = isinstance(study.sampler, optuna.samplers.GridSampler)
    trials = min(trials, math.prod(len(values) for values in space.values()))
    records: list[TrialRecord] = []

    def objective(trial: optuna.Trial) -> float:
        settings = {name: trial.suggest_categorical(name, values) for name, values in space.items()}
        earlier = next((record for record in records if record.settings == settings), None)
        if earlier is not None:  # TPE may draw a combination again: the same seed would train the same model
            records.append(_announce(replace(earlier, number=trial.number, evaluations=0), trials, earlier.number))
            if earlier.state == "PRUNED" or earlier.score is None:
                raise optuna.TrialPruned()
            return earlier.score
        scores: list[float] = []

        def report(score: float) -> None:
            scores.append(score)
            trial.report(score, len(scores))
            if trial.should_prune():
                records.append(_announce(TrialRecord(trial.number, settings, "PRUNED", score, len(scores)), trials))
                raise optuna.TrialPruned()

        best = run_trial(settings, report)
        records.append(_announce(TrialRecord(trial.number, settings, "COMPLETE", best, len(scores)), trials))
        return best

    started = time.perf_counter()
    study.optimize(objective, n_trials=trials)
    if not any(record.state == "COMPLETE" for record in records):
        raise RuntimeError(f"all {trials} search trials were pruned: raise the trial count or trial_share")
    best = study.best_trial
    seconds = round(time.perf_counter() - started, 1)
    return SearchResult(dict(best.params), float(best.value or 0.0), records, seconds, "grid" if grid else "tpe")


def log_search(tracked: StageRun, search: SearchResult) -> None:
    """Each trial as an MLflow run nested under the stage's, the choice as tags, the whole search as a JSON file."""
    for trial in search.trials:
        score = {"heldout_best": trial.score} if trial.score is not None else {}
        tracked.log_child(f"trial-{trial.number}", trial.settings, score, trial.state)
    for name, value in search.chosen.items():
        tracked.set_tag(f"distilflow.selected.{name}", str(value))  # a pooling or an init is no metric
    tracked.log_dict(search.as_dict(), "search.json")
