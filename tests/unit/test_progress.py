"""Off a terminal, progress is a few full lines with rate and time left, not one line per redraw."""

from __future__ import annotations

import io
import re

import pytest

from distilflow.runtime.progress import LineProgress, quiet_library_bars_off_terminal
from distilflow.training.loop import train
from tests.unit.test_training import accuracy_on, settings, supervised_loss, tiny_model, toy_data

LINE = re.compile(
    r"^finetune: (\d+)/(\d+) steps \((\d+)%\)  [\d.]+ step/s  elapsed \d+:\d\d  ETA (\d+:\d\d|\?)(  \w+=\S+)*$"
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_line_every_tenth_of_the_run_with_rate_and_eta() -> None:
    stream, clock = io.StringIO(), FakeClock()
    bar = LineProgress(1000, desc="finetune", interval_s=1e9, stream=stream, clock=clock)
    for _ in range(1000):
        clock.now += 0.01
        bar.update(1)
        bar.set_postfix(loss="0.4321")
    bar.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 10
    assert all(LINE.match(line) for line in lines), lines
    assert lines[0].startswith("finetune: 100/1000 steps (10%)  100.00 step/s") and "ETA 0:09" in lines[0]
    assert lines[-1].startswith("finetune: 1000/1000 steps (100%)") and lines[-1].endswith("loss=0.4321")


def test_a_slow_run_still_reports_every_interval_and_resumes_count_from_its_start() -> None:
    stream, clock = io.StringIO(), FakeClock()
    bar = LineProgress(10_000, initial=5000, desc="finetune", interval_s=10.0, stream=stream, clock=clock)
    for _ in range(30):
        clock.now += 2.0  # 0.5 step/s: far fewer than 10 % of the steps between two lines
        bar.update(1)
    bar.close()
    lines = stream.getvalue().splitlines()
    assert [line.split()[1] for line in lines] == [
        "5005/10000",
        "5010/10000",
        "5015/10000",
        "5020/10000",
        "5025/10000",
        "5030/10000",
    ]
    assert "0.50 step/s" in lines[-1] and "ETA 2:45:40" in lines[-1]  # 4970 steps left at 0.5 step/s


def test_the_training_loop_logs_lines_not_redraws_when_stderr_is_not_a_terminal(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    train_set, dev = toy_data(256, seed=0), toy_data(64, seed=1)
    train(
        tiny_model(),
        train_set,
        supervised_loss,
        accuracy_on(dev),
        settings(epochs=3.0),
        0,
        False,
        description="finetune",
    )
    err = capsys.readouterr().err
    assert "\r" not in err
    progress = [line for line in err.splitlines() if line.startswith("finetune:")]
    assert 10 <= len(progress) <= 11, progress  # 48 steps: a line every 4.8 steps' tenth, and the last
    assert all(LINE.match(line) for line in progress), progress
    assert progress[-1].startswith("finetune: 48/48 steps (100%)")


def test_off_a_terminal_the_libraries_bars_are_turned_off_unless_the_user_chose() -> None:
    env = {"HF_HUB_DISABLE_PROGRESS_BARS": "0"}
    quiet_library_bars_off_terminal(env)  # pytest's captured stderr is not a terminal
    assert env == {"HF_HUB_DISABLE_PROGRESS_BARS": "0", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"}
