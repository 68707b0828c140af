"""Choosing training settings by a protocol: Optuna trials scored on the held-out slice of train, never on dev.

BERT §4.1 selects each task's learning rate from a grid, on dev. Here the grid includes the larger rates small models
want, the score is the held-out slice's (data.holdout), and each trial is a short run (``trial_share`` of a full
run's steps) that Optuna's successive-halving pruner stops at an evaluation where it falls behind the others. The
sampler is seeded, so the same data and settings choose the same values.
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

    def summary(self, prefix: str) -> dict[str, Any]:
        """Flat numbers for a stage's metrics file: the chosen values, the best score, the trials' fate."""
        pruned = sum(trial.state == "PRUNED" for trial in self.trials)
        return {
            **{f"{prefix}selected_{name}": value for name, value in self.chosen.items()},
            f"{prefix}search_best_heldout": self.best_score,
            f"{prefix}search_trials": len(self.trials),
            f"{prefix}search_pruned": pruned,
            f"{prefix}search_seconds": self.seconds,
        }

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def trial_steps(rows: int, batch_size: int, grad_accum_steps: int, epochs: float, share: float) -> int:
    """Optimizer steps of one trial: ``share`` of the full run's."""
    per_epoch = math.ceil(rows / (batch_size * grad_accum_steps))
    return max(1, math.ceil(share * epochs * per_epoch))


def run_search(
    space: dict[str, list[Any]], run_trial: TrialFn, trials: int, seed: int, greater_is_better: bool
) -> SearchResult:
    """``trials`` Optuna trials over ``space`` (each value list a categorical choice); returns the best completed
    one."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="maximize" if greater_is_better else "minimize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.SuccessiveHalvingPruner(),
    )
    records: list[TrialRecord] = []

    def objective(trial: optuna.Trial) -> float:
        settings = {name: trial.suggest_categorical(name, values) for name, values in space.items()}
        scores: list[float] = []

        def report(score: float) -> None:
            scores.append(score)
            trial.report(score, len(scores))
            if trial.should_prune():
                records.append(TrialRecord(trial.number, settings, "PRUNED", score, len(scores)))
                raise optuna.TrialPruned()

        best = run_trial(settings, report)
        records.append(TrialRecord(trial.number, settings, "COMPLETE", best, len(scores)))
        return best

    started = time.perf_counter()
    study.optimize(objective, n_trials=trials)
    completed = [record for record in records if record.state == "COMPLETE"]
    if not completed:
        raise RuntimeError(f"all {trials} search trials were pruned: raise the trial count or trial_share")
    best = study.best_trial
    return SearchResult(dict(best.params), float(best.value or 0.0), records, round(time.perf_counter() - started, 1))
