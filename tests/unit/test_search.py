"""training.search: Optuna's choice over a grid, with successive-halving pruning, seeded and recorded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from distilflow.training.search import Report, read_summary, run_search, trial_steps


def curve(settings: dict[str, Any], report: Report) -> float:
    """A stand-in trial: scores rise towards 1 - |log10(lr) + 4| / 10 over four evaluations (best at lr 1e-4)."""
    import math

    ceiling = 1 - abs(math.log10(settings["learning_rate"]) + 4) / 10
    scores = [ceiling * step / 4 for step in range(1, 5)]
    for score in scores:
        report(score)
    return max(scores)


SPACE = {"learning_rate": [1e-6, 1e-5, 1e-4, 1e-2], "pooling": ["cls", "mean", "a", "b"]}  # 16 > 12 trials: TPE


def test_the_best_value_wins_every_trial_is_recorded_and_the_seed_repeats_the_search() -> None:
    result = run_search(SPACE, curve, trials=12, seed=0, greater_is_better=True)
    assert result.chosen["learning_rate"] == 1e-4 and result.best_score == 1.0 and result.sampler == "tpe"
    assert [trial.number for trial in sorted(result.trials, key=lambda t: t.number)] == list(range(12))
    assert {trial.state for trial in result.trials} <= {"COMPLETE", "PRUNED"}
    pruned = [trial for trial in result.trials if trial.state == "PRUNED"]
    assert pruned and all(trial.score is not None and trial.score < result.best_score for trial in pruned)
    again = run_search(SPACE, curve, trials=12, seed=0, greater_is_better=True)
    assert [(t.settings, t.state) for t in again.trials] == [(t.settings, t.state) for t in result.trials]
    summary = result.summary("")
    assert summary["selected_learning_rate"] == 1e-4 and summary["search_trials"] == 12
    assert summary["search_pruned"] == len(pruned) and summary["search_grid"] is False
    # What a metrics file holds is read back as the choice and its trial count (the GLUE table's settings column).
    assert read_summary({**summary, "best_step": 40}) == (result.chosen, 12)
    assert read_summary({f"student_{key}": value for key, value in summary.items()}, "student_") == (result.chosen, 12)
    assert read_summary({"best_step": 40}) == ({}, None)  # trained as written


def test_trials_that_can_cover_the_whole_space_run_each_combination_once() -> None:
    space = {"learning_rate": [1e-6, 1e-5, 1e-4, 1e-2], "pooling": ["cls", "mean"]}
    result = run_search(space, curve, trials=12, seed=3, greater_is_better=True)
    assert result.sampler == "grid" and len(result.trials) == 8  # not 12: a grid point twice would teach nothing
    assert sorted((t.settings["learning_rate"], t.settings["pooling"]) for t in result.trials) == sorted(
        (lr, pooling) for lr in space["learning_rate"] for pooling in space["pooling"]
    )
    assert result.chosen["learning_rate"] == 1e-4
    again = run_search(space, curve, trials=12, seed=3, greater_is_better=True)
    assert [t.settings for t in again.trials] == [t.settings for t in result.trials]


def test_a_trial_is_a_share_of_a_full_run() -> None:
    assert trial_steps(rows=1000, batch_size=32, grad_accum_steps=1, epochs=3.0, share=0.5) == 48  # 32 × 3 / 2
    assert trial_steps(rows=10, batch_size=32, grad_accum_steps=1, epochs=1.0, share=0.1) == 1
    # A recipe's max_steps caps the full run, and so the trial: half of 60 steps, not half of 96.
    assert trial_steps(rows=1000, batch_size=32, grad_accum_steps=1, epochs=3.0, share=0.5, max_steps=60) == 30


def test_a_combination_drawn_again_is_not_trained_again() -> None:
    space = {"learning_rate": [1e-6, 1e-5, 1e-4], "pooling": ["cls", "mean", "x"]}  # 9 > 8 trials: TPE draws
    trained: list[dict[str, Any]] = []

    def counted(settings: dict[str, Any], report: Report) -> float:
        trained.append(dict(settings))
        return curve(settings, report)

    result = run_search(space, counted, trials=8, seed=1, greater_is_better=True)
    keys = [tuple(sorted(t.settings.items())) for t in sorted(result.trials, key=lambda t: t.number)]
    assert len(trained) == len({tuple(sorted(s.items())) for s in trained}), "each combination trained once"
    repeats = [t for t in result.trials if t.evaluations == 0]
    assert len(keys) == 8 and len(trained) + len(repeats) == 8
    for repeat in repeats:
        first = next(t for t in result.trials if t.settings == repeat.settings and t.evaluations > 0)
        assert (repeat.state, repeat.score) == (first.state, first.score)


class Killed(BaseException):
    """A kill in the middle of a trial: not an Exception, so nothing on the way may swallow it."""


def killed_after(trained: int, trial: Any = curve) -> Any:
    """A trial function that trains ``trained`` trials, then dies half-way through the next one."""
    count = [0]

    def run(settings: dict[str, Any], report: Report) -> float:
        count[0] += 1
        if count[0] > trained:
            report(0.99)  # a rung value the killed trial must not leave behind for the pruner
            raise Killed
        return float(trial(settings, report))

    return run


def outcome(result: Any) -> list[tuple[int, dict[str, Any], str, float | None, int]]:
    return [(t.number, t.settings, t.state, t.score, t.evaluations) for t in result.trials]


@pytest.mark.parametrize(
    ("space", "trials"),
    [
        ({"learning_rate": [1e-6, 1e-5, 1e-4, 1e-2], "pooling": ["cls", "mean"]}, 8),  # the grid
        (SPACE, 12),  # TPE, with its random start and its learned draws on either side of the kill
    ],
)
def test_a_search_killed_mid_trial_resumes_from_its_journal_and_chooses_as_an_unbroken_one(
    tmp_path: Path, space: dict[str, list[Any]], trials: int
) -> None:
    unbroken = run_search(space, curve, trials=trials, seed=5, greater_is_better=True)
    journal = tmp_path / "trials.journal"
    with pytest.raises(Killed):
        run_search(space, killed_after(7), trials=trials, seed=5, greater_is_better=True, journal=journal)
    trained: list[dict[str, Any]] = []

    def counted(settings: dict[str, Any], report: Report) -> float:
        trained.append(settings)
        return curve(settings, report)

    resumed = run_search(space, counted, trials=trials, seed=5, greater_is_better=True, journal=journal)
    assert outcome(resumed) == outcome(unbroken)
    assert (resumed.chosen, resumed.best_score) == (unbroken.chosen, unbroken.best_score)
    assert resumed.resumed >= 7 and resumed.summary("")["search_resumed"] == resumed.resumed
    fresh = [t for t in resumed.trials[resumed.resumed :] if t.evaluations > 0]  # drawn again: not trained
    assert len(trained) == len(fresh) and trained == [t.settings for t in fresh]
    # A finished search's journal answers at once: nothing trains a third time.
    again = run_search(space, killed_after(0), trials=trials, seed=5, greater_is_better=True, journal=journal)
    assert outcome(again) == outcome(unbroken) and again.resumed == len(unbroken.trials)


def test_a_journal_torn_by_a_kill_mid_write_is_read_to_its_last_whole_line(tmp_path: Path) -> None:
    space = {"learning_rate": [1e-6, 1e-5, 1e-4, 1e-2], "pooling": ["cls", "mean"]}
    journal = tmp_path / "trials.journal"
    with pytest.raises(Killed):
        run_search(space, killed_after(3), trials=8, seed=5, greater_is_better=True, journal=journal)
    with journal.open("ab") as torn:
        torn.write(b'{"op_code": 6, "worker_id": "x", "trial_id": 3, "user_at')  # no newline: cut mid-write
    resumed = run_search(space, curve, trials=8, seed=5, greater_is_better=True, journal=journal)
    assert resumed.resumed == 3 and outcome(resumed) == outcome(run_search(space, curve, 8, 5, True))


@pytest.mark.parametrize("content", [b"not a journal\n{}\n", b"[1]\n", b'{"op_code": 99, "worker_id": "w"}\n'])
def test_an_unreadable_journal_is_said_and_the_search_starts_over(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes
) -> None:
    journal = tmp_path / "trials.journal"
    journal.write_bytes(content)
    space = {"learning_rate": [1e-5, 1e-4], "pooling": ["cls"]}
    result = run_search(space, curve, trials=2, seed=5, greater_is_better=True, journal=journal)
    assert result.resumed == 0 and len(result.trials) == 2 and result.chosen["learning_rate"] == 1e-4
    assert "not resuming from" in capsys.readouterr().out


def test_a_trial_with_no_score_is_pruned_and_a_resumed_search_still_matches_the_unbroken_one(tmp_path: Path) -> None:
    space = {"learning_rate": [1e-6, 1e-5, 1e-4, 1e-2], "pooling": ["cls", "mean"]}

    def constant_at_1e_6(settings: dict[str, Any], report: Report) -> float:
        """lr 1e-6 learns nothing: a regression's Pearson of constant predictions is NaN."""
        return float("nan") if settings["learning_rate"] == 1e-6 else curve(settings, report)

    unbroken = run_search(space, constant_at_1e_6, trials=8, seed=5, greater_is_better=True)
    unscored = [t for t in unbroken.trials if t.settings["learning_rate"] == 1e-6]
    assert unscored and all((t.state, t.score) == ("PRUNED", None) for t in unscored)
    assert unbroken.chosen["learning_rate"] == 1e-4
    journal = tmp_path / "trials.journal"
    with pytest.raises(Killed):
        run_search(space, killed_after(6, constant_at_1e_6), 8, 5, True, journal=journal)
    resumed = run_search(space, constant_at_1e_6, trials=8, seed=5, greater_is_better=True, journal=journal)
    assert outcome(resumed) == outcome(unbroken)


def test_neighbouring_seeds_draw_their_own_trials() -> None:
    """Each trial's sampler is seeded from (seed, trial): seed 2 is not seed 1's draws one trial later."""
    one = [t.settings for t in run_search(SPACE, curve, trials=12, seed=1, greater_is_better=True).trials]
    two = [t.settings for t in run_search(SPACE, curve, trials=12, seed=2, greater_is_better=True).trials]
    assert two[:5] != one[1:6] and two != one
