"""Where every row goes: kept for ``data/validated``, or dropped with the rule and line that dropped it.

The reader leaves out rows it cannot split into columns, and ``normalise`` rows whose label it cannot read; the
account built here holds both, so ``read == kept + dropped`` is checked for every split before anything is written.
"""

from __future__ import annotations

import pandas as pd

from distilflow.data.glue_io import RawSplit, RowProblem, normalise
from distilflow.data.validation.findings import RowAccount, shown
from distilflow.tasks import GlueTask


def dropped_rows(raw: RawSplit, label_problems: list[RowProblem]) -> tuple[RowProblem, ...]:
    """Every data line of ``raw`` that is not kept, once, with the rule that dropped it."""
    if not raw.readable:  # nothing past an unreadable header can be read: each data line goes with it
        cause = raw.problems[0] if raw.problems else None
        rule = cause.rule if cause else "missing_column"
        detail = f"the header (line 1) cannot be read: {cause.detail if cause else rule}"
        lines = range(raw.first_data_line, raw.first_data_line + raw.read)
        return tuple(RowProblem(line, rule, None, "''", detail) for line in lines)
    structural = [problem for problem in raw.problems if problem.line >= raw.first_data_line]
    return tuple(sorted([*structural, *label_problems], key=lambda problem: problem.line))


def keep_rows(task: GlueTask, raws: dict[str, RawSplit]) -> tuple[dict[str, pd.DataFrame], dict[str, RowAccount]]:
    """The rows each split passes on (labels parsed), and the account of where every other row went."""
    frames: dict[str, pd.DataFrame] = {}
    accounts: dict[str, RowAccount] = {}
    for split, raw in raws.items():
        frame, label_problems = normalise(task, raw.frame)
        dropped = dropped_rows(raw, label_problems)
        accounts[split] = RowAccount(split, shown(raw.path), raw.read, len(frame), dropped, raw.unread)
        if raw.readable:
            frames[split] = frame
    return frames, accounts
