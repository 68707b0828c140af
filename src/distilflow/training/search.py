"""Choosing training settings by a protocol: Optuna trials scored on the held-out slice of train, never on dev.

BERT §4.1 selects each task's learning rate from a grid, on dev. Here the grid includes the larger rates small models
want, the score is the held-out slice's (data.holdout), and each trial is a short run (``trial_share`` of a full
run's steps) that Optuna's successive-halving pruner stops at an evaluation where it falls behind the others. When
the trials can cover every combination of the space, they do (Optuna's grid sampler, in a seeded order); otherwise a
seeded TPE sampler picks them. Either way the same data and settings choose the same values.

Given a ``journal`` file, the search survives a kill: each finished trial is appended to it (Optuna's journal
storage), and a rerun reads them back and runs only the rest, drawing what an uninterrupted search would have drawn
(the grid in the seed's order; TPE seeded afresh before each trial from the seed and the count of finished trials).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import optuna

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
    seconds: float = 0.0


@dataclass
class SearchResult:
    chosen: dict[str, Any]
    best_score: float
    trials: list[TrialRecord] = field(default_factory=list)
    seconds: float = 0.0  # the trials' time, those of an interrupted attempt included
    sampler: str = "tpe"  # grid when the trials cover the whole space
    resumed: int = 0  # trials read back from the journal of an interrupted attempt

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
            f"{prefix}search_resumed": self.resumed,
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


STUDY = "search"
FINISHED = ("COMPLETE", "PRUNED")


def _sampler(space: dict[str, list[Any]], trials: int, seed: int, finished: int) -> Any:
    """The grid sampler when ``trials`` cover the space, else TPE. The grid's order is the seed's shuffle, trial
    number n taking its n-th point; TPE keeps no state but its random generator, seeded here from the count of
    ``finished`` trials too, so its next draw is a function of the finished trials alone."""
    import optuna

    if math.prod(len(values) for values in space.values()) <= trials:
        return optuna.samplers.GridSampler(space, seed=seed)
    # One generator per (seed, trial), not seed + trial: that would make seed 2's draws seed 1's, one trial later.
    trial_seed = int(np.random.SeedSequence([seed, finished]).generate_state(1)[0])
    # TPE samples its first trials at random (10 by default); half the budget leaves it room to learn
    return optuna.samplers.TPESampler(seed=trial_seed, n_startup_trials=max(2, trials // 2))


def _storage(journal: Path) -> Any:
    import optuna
    from optuna.storages.journal import JournalFileBackend

    # The search is the journal's only writer: a lock a kill left behind would only stall the first write 30 s.
    journal.with_name(journal.name + ".lock").unlink(missing_ok=True)
    return optuna.storages.JournalStorage(JournalFileBackend(str(journal)))


def _finished_in(journal: Path) -> list[optuna.trial.FrozenTrial]:
    """The trials an earlier attempt finished, from its journal, in order: every one that recorded its end (the
    one a kill interrupted did not); none when there is no journal or it cannot be read. Optuna skips a last line
    a kill tore mid-write."""
    import optuna

    if not journal.exists():
        return []
    try:
        earlier = optuna.load_study(study_name=STUDY, storage=_storage(journal))
        return [t for t in earlier.get_trials(deepcopy=False) if t.state.is_finished() and "record" in t.user_attrs]
    except Exception as error:  # whatever the file holds, the search can start over without it
        _starting_over(journal, error)
        return []


def _starting_over(journal: Path, error: Exception) -> None:
    print(f"search: not resuming from {journal}: {type(error).__name__} {error}; the search starts over", flush=True)


def _study(journal: Path | None, maximize: bool, evaluations: int) -> Any:
    """An Optuna study with successive-halving pruning, in memory or in ``journal`` with the trials an earlier
    attempt finished there (a trial a kill interrupted is dropped: it runs again from its start)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    settings: dict[str, Any] = {
        "direction": "maximize" if maximize else "minimize",
        "pruner": optuna.pruners.SuccessiveHalvingPruner(
            min_resource=max(1, evaluations // 4) if evaluations else "auto", reduction_factor=3
        ),
    }
    if journal is None:
        return optuna.create_study(**settings)
    fresh = journal.with_name(journal.name + ".new")  # written whole, then swapped in: a kill keeps the old one
    fresh.unlink(missing_ok=True)
    try:
        optuna.create_study(storage=_storage(fresh), study_name=STUDY, **settings).add_trials(_finished_in(journal))
    except Exception as error:  # a trial Optuna will not take back: start over rather than fail every rerun
        _starting_over(journal, error)
        fresh.unlink()
        optuna.create_study(storage=_storage(fresh), study_name=STUDY, **settings)
    os.replace(fresh, journal)
    return optuna.load_study(study_name=STUDY, storage=_storage(journal), pruner=settings["pruner"])


def _announce(record: TrialRecord, trials: int, repeats: int | None = None) -> TrialRecord:
    """One line per trial as it ends, so a person watching a long search sees where it stands."""
    settings = ", ".join(f"{name} {value}" for name, value in record.settings.items())
    fate = "pruned" if record.state == "PRUNED" else "complete"
    how = f"after {record.evaluations} evaluations"
    if repeats is not None:
        how = f"as trial {repeats + 1}, not trained again"
    score = "no score" if record.score is None else f"{record.score:.4f}"
    line = f"search: trial {record.number + 1}/{trials} ({settings}): held-out {score}, {fate} {how}"
    print(line, flush=True)
    return record


def run_search(
    space: dict[str, list[Any]],
    run_trial: TrialFn,
    trials: int,
    seed: int,
    greater_is_better: bool,
    evaluations_per_trial: int = 0,
    journal: Path | None = None,
) -> SearchResult:
    """Up to ``trials`` Optuna trials over ``space`` (each value list a categorical choice); returns the best
    completed one. A space of at most ``trials`` combinations is run whole, each combination once.

    The first pruning rung is a quarter of the way into a trial (``evaluations_per_trial``; 0: Optuna's guess, the
    first evaluation): a score after a few warm-up steps says more about the learning rate's speed than its end.
    ``journal``: where finished trials are kept, so a rerun after a kill runs only the rest (module docstring)."""
    import optuna

    study = _study(journal, greater_is_better, evaluations_per_trial)
    trials = min(trials, math.prod(len(values) for values in space.values()))
    records = _read_back(study, trials, journal)
    resumed = len(records)

    def finish(trial: optuna.Trial, record: TrialRecord, repeats: int | None = None) -> float:
        """Journal and announce the trial's end; its score, or TrialPruned when it has none to choose by."""
        trial.set_user_attr("record", asdict(record))
        records.append(_announce(record, trials, repeats))
        if record.state == "PRUNED" or record.score is None:
            raise optuna.TrialPruned()
        return record.score

    def objective(trial: optuna.Trial) -> float:
        started = time.perf_counter()
        number = len(records)
        settings = {name: trial.suggest_categorical(name, values) for name, values in space.items()}
        earlier = next((record for record in records if record.settings == settings), None)
        if earlier is not None:  # TPE may draw a combination again: the same seed would train the same model
            return finish(trial, replace(earlier, number=number, evaluations=0, seconds=0.0), earlier.number)
        scores: list[float] = []

        def report(score: float) -> None:
            scores.append(score)
            trial.report(score, len(scores))
            if trial.should_prune():
                seconds = round(time.perf_counter() - started, 1)
                finish(trial, TrialRecord(number, settings, "PRUNED", score, len(scores), seconds))

        best = run_trial(settings, report)
        seconds = round(time.perf_counter() - started, 1)
        if not math.isfinite(best):  # no evaluation scored (a constant regression's Pearson): nothing to choose by
            return finish(trial, TrialRecord(number, settings, "PRUNED", None, len(scores), seconds))
        return finish(trial, TrialRecord(number, settings, "COMPLETE", best, len(scores), seconds))

    def reseed(study: optuna.Study, _: Any = None) -> None:
        study.sampler = _sampler(space, trials, seed, len(records))

    reseed(study)
    if trials > resumed:
        study.optimize(objective, n_trials=trials - resumed, callbacks=[reseed])
    return _result(study, records, resumed)


def _read_back(study: Any, trials: int, journal: Path | None) -> list[TrialRecord]:
    """The records of the trials an interrupted attempt finished (none for a fresh search), in order."""
    records = sorted((TrialRecord(**t.user_attrs["record"]) for t in study.trials), key=lambda r: r.number)
    if records:
        print(f"search: {len(records)} of {trials} trials finished before, read back from {journal}", flush=True)
    return records


def _result(study: Any, records: list[TrialRecord], resumed: int) -> SearchResult:
    import optuna

    if not any(record.state == "COMPLETE" for record in records):
        raise RuntimeError(f"all {len(records)} search trials were pruned: raise the trial count or trial_share")
    best = study.best_trial
    grid = isinstance(study.sampler, optuna.samplers.GridSampler)
    seconds = round(sum(record.seconds for record in records), 1)
    return SearchResult(
        dict(best.params), float(best.value or 0.0), records, seconds, "grid" if grid else "tpe", resumed
    )


def log_search(tracked: StageRun, search: SearchResult) -> None:
    """Each trial as an MLflow run nested under the stage's, the choice as tags, the whole search as a JSON file."""
    for trial in search.trials:
        score = {"heldout_best": trial.score} if trial.score is not None else {}
        tracked.log_child(f"trial-{trial.number}", trial.settings, score, trial.state)
    for name, value in search.chosen.items():
        tracked.set_tag(f"distilflow.selected.{name}", str(value))  # a pooling or an init is no metric
    tracked.log_dict(search.as_dict(), "search.json")
