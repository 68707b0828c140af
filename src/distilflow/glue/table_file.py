"""Reading and writing the GLUE table files (``metrics/glue.json``, ``reports/glue.md``, ``plots/glue.png``).

Runs that overlap (docs/glue.md, "Running the suite while someone else does") write the table one at a time, under
the project's table lock, each merging its columns into the table as it is at that moment (``write_table``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from distilflow.evaluation.references import Reference
from distilflow.glue.table import build_glue_table, draw, merge_results, render_markdown, results_from_table
from distilflow.glue.table_schema import GlueTable
from distilflow.paths import Paths
from distilflow.runtime.locking import LockHolder, workspace_lock

TABLE_LOCK_NAME = "glue-table.lock"
"""In the project's lock folder: apart from the pipeline's, so a table write never waits for `make pipeline`."""
TABLE_LOCK_TIMEOUT_S = 600.0
"""A writer holds the table for seconds (read, merge, three files); waiting this long means something is stuck."""


def earlier_results(table_file: Path) -> dict[str, dict[str, Any]]:
    """The per-task results of the table a previous run wrote (none when there is no table yet)."""
    if not table_file.is_file():
        return {}
    return results_from_table(GlueTable.from_json(table_file.read_text(encoding="utf-8"), str(table_file)))


def _replace(file: Path, write: Callable[[Path], object]) -> None:
    """Write ``file`` through a temporary file beside it and rename it into place: a reader that does not take the
    table lock (the start-of-run check) sees the old file or the new one, never half of one."""
    file.parent.mkdir(parents=True, exist_ok=True)
    temporary = file.with_name(f".{file.stem}-{os.getpid()}.tmp{file.suffix}")  # the suffix picks the plot format
    try:
        write(temporary)
        os.replace(temporary, file)
    finally:
        temporary.unlink(missing_ok=True)


def write_table(
    root: Path,
    this_run: Mapping[str, Mapping[str, Any]],
    attempted: Mapping[str, str],
    references: Sequence[Reference],
    outcome: tuple[Mapping[str, str], Mapping[str, str]] = ({}, {}),
    command: str | None = None,
    keep_earlier: bool = True,
    warn: Callable[[str], None] | None = None,
) -> GlueTable:
    """Write the GLUE table (``metrics/glue.json``, ``reports/glue.md``, ``plots/glue.png``) under the project's
    table lock: this run's columns merged into the table as it is now, not as it was when the run started (hours
    ago; another run may have written its own columns since). ``attempted``: each task this run attempted and when
    its run ended (``ended_now``); a column written by a later run of that task stays (``merge_results``). Tasks
    refused because another run held them are not attempted: their columns are that run's to write. ``outcome``:
    this run's (failed, skipped) tasks. With ``keep_earlier`` false, the table holds this run's tasks only.
    ``warn`` hears of an unreadable table and of a wait for another writer. Returns the table written."""
    paths = Paths.at(root)
    owner = f"`{command or 'distilflow glue'}` (writing the GLUE table)"

    def waiting(holder: LockHolder | None) -> None:
        if warn is not None:
            warn(f"waiting for {holder.describe() if holder else 'another run'} to finish writing the GLUE table")

    lock = workspace_lock(root, owner, TABLE_LOCK_TIMEOUT_S, poll_s=0.2, on_wait=waiting, name=TABLE_LOCK_NAME)
    with lock:
        earlier: dict[str, dict[str, Any]] = {}
        if keep_earlier:
            try:
                earlier = earlier_results(paths.glue_metrics_file)
            except (ValueError, KeyError, TypeError) as error:  # UnreadableTable is a ValueError
                if warn is not None:
                    warn(f"{paths.glue_metrics_file} unreadable ({error}): the new table holds this run's tasks only")
        columns = merge_results(this_run, earlier, attempted, ended=attempted)
        table = build_glue_table(columns, references, *outcome, command)
        text = table.to_json()
        _replace(paths.glue_metrics_file, lambda file: file.write_text(text, encoding="utf-8"))
        markdown = render_markdown(table, command)
        _replace(paths.glue_report_file, lambda file: file.write_text(markdown, encoding="utf-8"))
        _replace(paths.glue_plot_file, lambda file: draw(table, file))
    return table
