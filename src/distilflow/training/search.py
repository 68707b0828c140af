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
from dataclasses import asdict, dataclass, field
from typing import Any

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
            **{f"{prefix}selected_{name}": value for name, value in self.chosen.items()},
            f"{prefix}search_best_heldout": self.best_score,
            f"{prefix}search_trials": len(self.trials),
            f"{prefix}search_pruned": pruned,
            f"{prefix}search_seconds": self.seconds,
            f"{prefix}search_grid": self.sampler == "grid",
        }

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def trial_steps(
    rows: int, batch_size: int, grad_accum_steps: int, epochs: float, share: float, max_steps: int | None = None
) -> int:
    """Optimizer steps of one trial: ``share`` of the full run's (``epochs``, or ``max_steps`` where fewer)."""
    per_epoch = math.ceil(rows / (batch_size * grad_accum_steps))
    full = math.ceil(epochs * per_epoch)
    return max(1, math.ceil(share * min(full, max_steps or full)))


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

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    combinations = math.prod(len(values) for values in space.values())
    grid = combinations <= trials
    sampler = optuna.samplers.GridSampler(space, seed=seed) if grid else optuna.samplers.TPESampler(seed=seed)
    trials = min(trials, combinations)
    study = optuna.create_study(
        direction="maximize" if greater_is_better else "minimize",
        sampler=sampler,
        pruner=optuna.pruners.SuccessiveHalvingPruner(
            min_resource=max(1, evaluations_per_trial // 4) if evaluations_per_trial else "auto", reduction_factor=3
        ),
    )
    records: list[TrialRecord] = []

    def objective(trial: optuna.Trial) -> float:
        settings = {name: trial.suggest_categorical(name, values) for name, values in space.items()}
        scores: list[float] = []

        def report(score: float) -> None:
            scores.append(score)
            trial.report(score, len(scores))
            if trial.should_prune():
                records.append(announce(TrialRecord(trial.number, settings, "PRUNED", score, len(scores))))
                raise optuna.TrialPruned()

        best = run_trial(settings, report)
        records.append(announce(TrialRecord(trial.number, settings, "COMPLETE", best, len(scores))))
        return best

    def announce(record: TrialRecord) -> TrialRecord:
        """One line per trial as it ends, so a person watching a long search sees where it stands."""
        settings = ", ".join(f"{name} {value}" for name, value in record.settings.items())
        fate = "pruned" if record.state == "PRUNED" else "complete"
        print(
            f"search: trial {record.number + 1}/{trials} ({settings}): held-out {record.score:.4f}, "
            f"{fate} after {record.evaluations} evaluations",
            flush=True,
        )
        return record

    started = time.perf_counter()
    study.optimize(objective, n_trials=trials)
    completed = [record for record in records if record.state == "COMPLETE"]
    if not completed:
        raise RuntimeError(f"all {trials} search trials were pruned: raise the trial count or trial_share")
    best = study.best_trial
    seconds = round(time.perf_counter() - started, 1)
    return SearchResult(dict(best.params), float(best.value or 0.0), records, seconds, "grid" if grid else "tpe")
