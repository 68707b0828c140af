"""Progress a person can read wherever it goes: a live bar in a terminal, sparse full lines everywhere else.

In a file, DVC's captured output or a Prefect log, every redraw of a tqdm bar becomes one more line (an earlier
pipeline log was 157 KB of them). Off a terminal this module writes one line every ``interval_s`` seconds or every
``share`` of the total, whichever comes first, and one at the end, each with the rate and the time left.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

INTERVAL_ENV = "DISTILFLOW_PROGRESS_INTERVAL_S"
DEFAULT_INTERVAL_S = 10.0
DEFAULT_SHARE = 0.1


def _clock_text(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class LineProgress:
    """The part of tqdm's interface the training loop uses (update, set_postfix, close), as log lines."""

    def __init__(
        self,
        total: int,
        initial: int = 0,
        desc: str = "",
        unit: str = "step",
        interval_s: float = DEFAULT_INTERVAL_S,
        share: float = DEFAULT_SHARE,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total, self.n, self.desc, self.unit = total, initial, desc, unit
        self.interval_s, self.share, self.stream, self.clock = interval_s, share, stream or sys.stderr, clock
        self.postfix: dict[str, Any] = {}
        self._start_n, self._started = initial, clock()
        self._last_time, self._last_n = self._started, initial
        self._closed = False

    def update(self, n: int = 1) -> None:
        self.n += n
        now = self.clock()
        step_due = self.total > 0 and self.n - self._last_n >= max(1.0, self.share * self.total)
        if step_due or now - self._last_time >= self.interval_s:
            self._emit(now)

    def set_postfix(self, refresh: bool = True, **values: Any) -> None:
        del refresh  # lines are written on their own schedule
        self.postfix = values

    def close(self) -> None:
        if not self._closed and self.n != self._last_n:
            self._emit(self.clock())
        self._closed = True

    def line(self, now: float) -> str:
        elapsed = now - self._started
        rate = (self.n - self._start_n) / elapsed if elapsed > 0 else 0.0
        percent = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        left = f"ETA {_clock_text((self.total - self.n) / rate)}" if rate > 0 and self.total else "ETA ?"
        extra = "".join(f"  {key}={value}" for key, value in self.postfix.items())
        return (
            f"{self.desc}: {self.n}/{self.total} {self.unit}s{percent}  {rate:.2f} {self.unit}/s  "
            f"elapsed {_clock_text(elapsed)}  {left}{extra}"
        )

    def _emit(self, now: float) -> None:
        print(self.line(now), file=self.stream, flush=True)
        self._last_time, self._last_n = now, self.n


# The Hugging Face libraries' own bars (datasets' map, transformers' "Loading weights"): read at their import.
LIBRARY_BARS_OFF = {"HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"}


def quiet_library_bars_off_terminal(env: dict[str, str] | None = None) -> None:
    """Off a terminal, turn the libraries' redraw bars off (a user's explicit setting wins). Call before import."""
    target = os.environ if env is None else env
    if not sys.stderr.isatty():
        for key, value in LIBRARY_BARS_OFF.items():
            target.setdefault(key, value)


def progress_bar(total: int, initial: int = 0, desc: str = "", unit: str = "step", disable: bool = False) -> Any:
    """tqdm's bar in a terminal; :class:`LineProgress` in a file, a pipe, DVC's output or a Prefect log."""
    from tqdm.auto import tqdm

    disable = disable or os.environ.get("TQDM_DISABLE", "").lower() in ("1", "true", "yes")
    if disable or sys.stderr.isatty():
        return tqdm(total=total, initial=initial, desc=desc, disable=disable, dynamic_ncols=True, unit=unit)
    interval = float(os.environ.get(INTERVAL_ENV, DEFAULT_INTERVAL_S))
    return LineProgress(total, initial, desc, unit, interval_s=interval)
