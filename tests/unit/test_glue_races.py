"""Two GLUE suite runs at once (issue #30): real processes racing on real files and real locks.

A second run of a task that is running is refused at once, naming the first; two runs of different tasks writing
the table at the same moment both keep their column; a column's run record names the commit its code was copied
from, not the project's commit when the task finished.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from distilflow.glue.suite import (
    TaskRunning,
    code_commit,
    prepare_workspace,
    run_record,
    source_record,
    summary_lines,
    task_lock,
)
from distilflow.glue.table import build_glue_table
from distilflow.glue.table_file import TABLE_LOCK_NAME, write_table
from distilflow.paths import Paths
from distilflow.runtime.locking import TOKEN_ENV, workspace_lock
from tests.conftest import REPO_ROOT

HOLD_TASK = """
import sys
from pathlib import Path
from distilflow.glue.suite import task_lock
with task_lock(sys.argv[1], Path(sys.argv[2]), sys.argv[3]):
    print("held", flush=True)
    sys.stdin.read()  # until the test closes our stdin (or kills us)
"""

WRITE_COLUMN = """
import json, sys, time
from pathlib import Path
from distilflow.glue.table_file import write_table
root, task, go = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
result = json.loads(sys.argv[4])
print("ready", flush=True)
while not go.exists():  # both processes start their write at the same moment
    time.sleep(0.01)
ended = {task: result["run"]["finished_at"]}
command = result["run"]["command"]
write_table(root, {task: result}, ended, [], command=command, warn=lambda line: print(line, flush=True))
"""


def python(script: str, *args: str, **kwargs: Any) -> subprocess.Popen[str]:
    """Another run's process: not our child as far as the locks go (a holder's children pass through its lock)."""
    env = {key: value for key, value in os.environ.items() if key != TOKEN_ENV}
    env["PYTHONPATH"] = str(REPO_ROOT / "src")
    return subprocess.Popen([sys.executable, "-c", script, *args], text=True, env=env, **kwargs)


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """A real process holding SST-2's task lock, as a running `distilflow glue --tasks sst2` does."""
    workspace = tmp_path / "glue" / "sst2"
    owner = "`distilflow glue --tasks sst2`, flow run 'sst2' (first)"
    process = python(HOLD_TASK, "sst2", str(workspace), owner, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert process.stdout is not None and process.stdout.readline().strip() == "held"
    yield process
    if process.poll() is None:
        process.kill()
    process.wait(timeout=30)


def test_a_second_run_of_a_running_task_is_refused_at_once_naming_the_first(
    tmp_path: Path, holder: subprocess.Popen[str]
) -> None:
    workspace = tmp_path / "glue" / "sst2"
    (workspace / "params.yaml").write_text("task: sst2\n")  # what the first run's stages are reading
    started = time.monotonic()
    with pytest.raises(TaskRunning) as refused, task_lock("sst2", workspace, "`distilflow glue --profile smoke`"):
        (workspace / "params.yaml").write_text("task: smoke\n")  # never reached: prepare is not run
    assert time.monotonic() - started < 5  # refused, not queued behind hours of training
    message = str(refused.value)
    assert "`distilflow glue --tasks sst2`" in message and "flow run 'sst2' (first)" in message
    assert f"pid {holder.pid}" in message and "since 20" in message
    assert (workspace / "params.yaml").read_text() == "task: sst2\n"
    # The second run's other tasks still run: their locks are their own.
    with task_lock("mrpc", tmp_path / "glue" / "mrpc", "`distilflow glue --profile smoke`"):
        pass
    line = summary_lines({}, {}, {}, refused={"sst2": message})
    assert line == [f"sst2: REFUSED: {message}"]


def test_a_killed_run_never_blocks_the_next(tmp_path: Path, holder: subprocess.Popen[str]) -> None:
    holder.send_signal(signal.SIGKILL)  # no cleanup runs: the kernel drops the lock with the process
    holder.wait(timeout=30)
    with task_lock("sst2", tmp_path / "glue" / "sst2", "the next run") as me:
        assert me.pid == os.getpid()


def column(task: str, metric: str, command: str) -> dict[str, Any]:
    scores = {metric: 0.8}
    return {
        "teacher": scores,
        "student": scores,
        "baseline": {metric: 0.5},
        "ratios": {"parameters_smaller_x": 5.0},
        "registered": {"model": f"distilflow-glue-{task}-student", "version": "1", "promoted": True, "reasons": []},
        "run": {"command": command, "commit": "abc", "finished_at": "2026-12-02T10:00:00Z"},
    }


def test_two_runs_of_different_tasks_writing_the_table_at_once_keep_both_columns(tmp_path: Path) -> None:
    go = tmp_path / "go"
    runs = {"sst2": ("accuracy", "distilflow glue --tasks sst2"), "cola": ("matthews_correlation", "glue cola")}
    writers = [
        python(
            WRITE_COLUMN,
            str(tmp_path),
            task,
            str(go),
            json.dumps(column(task, metric, command)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for task, (metric, command) in runs.items()
    ]
    for writer in writers:
        assert writer.stdout is not None and writer.stdout.readline().strip() == "ready"
    go.touch()
    for writer in writers:
        _, errors = writer.communicate(timeout=120)
        assert writer.returncode == 0, errors
    paths = Paths.at(tmp_path)
    table = json.loads(paths.glue_metrics_file.read_text())
    assert table["tasks"] == ["sst2", "cola"]  # TASKS order; neither write lost the other's column
    commands = {name: entry["run"]["command"] for name, entry in table["per_task"].items()}
    assert commands == {name: command for name, (_, command) in runs.items()}
    report = paths.glue_report_file.read_text()
    assert "SST-2 acc" in report and "CoLA MCC" in report
    assert paths.glue_plot_file.stat().st_size > 0
    assert sorted(path.name for path in paths.glue_metrics_file.parent.iterdir()) == ["glue.json"]  # no temp files


def test_a_writer_reads_the_table_once_it_holds_the_lock_not_before(tmp_path: Path) -> None:
    """Deterministic where the race above is not: a writer waits while another holds the table, then merges the
    table that one left (read before the wait, the other's column would be lost)."""
    go = tmp_path / "go"
    go.touch()
    paths = Paths.at(tmp_path)
    with workspace_lock(tmp_path, "`glue --tasks sst2` (writing the GLUE table)", name=TABLE_LOCK_NAME):
        writer = python(WRITE_COLUMN, str(tmp_path), "cola", str(go),
                        json.dumps(column("cola", "matthews_correlation", "glue cola")),
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
        assert writer.stdout is not None and writer.stdout.readline().strip() == "ready"
        waiting = writer.stdout.readline()
        assert "waiting for `glue --tasks sst2` (writing the GLUE table) (pid" in waiting
        table = build_glue_table({"sst2": column("sst2", "accuracy", "glue --tasks sst2")}, [])
        paths.glue_metrics_file.parent.mkdir(parents=True)
        paths.glue_metrics_file.write_text(table.to_json())  # what the holder writes while the other waits
    _, errors = writer.communicate(timeout=120)
    assert writer.returncode == 0, errors
    merged = json.loads(paths.glue_metrics_file.read_text())
    assert merged["tasks"] == ["sst2", "cola"]
    assert merged["per_task"]["sst2"]["run"]["command"] == "glue --tasks sst2"


def test_the_table_is_read_at_write_time_and_an_unreadable_one_is_reported(tmp_path: Path) -> None:
    first = column("sst2", "accuracy", "glue sst2")
    write_table(tmp_path, {"sst2": first}, {"sst2": "2026-12-02T10:00:00Z"}, [])
    # A run that started before that write (and read no SST-2 then) still keeps it: it reads the table as it is now.
    table = write_table(tmp_path, {"cola": column("cola", "matthews_correlation", "glue cola")}, {"cola": "x"}, [])
    assert table.tasks == ["sst2", "cola"] and table.per_task["sst2"].run.kept is True
    Paths.at(tmp_path).glue_metrics_file.write_text('{"tasks": [')
    warnings: list[str] = []
    again = write_table(tmp_path, {"sst2": first}, {"sst2": "y"}, [], warn=warnings.append)
    assert again.tasks == ["sst2"] and "unreadable" in warnings[0]


def git(root: Path, *args: str) -> str:
    done = subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=root, check=True,
                          capture_output=True, text=True)  # fmt: skip
    return done.stdout.strip()


def test_the_run_record_names_the_commit_the_code_was_copied_from(tmp_path: Path) -> None:
    project, workspace = tmp_path / "project", tmp_path / "project" / "glue" / "sst2"
    (project / "src").mkdir(parents=True)
    (project / "src" / "stage.py").write_text("VERSION = 'A'\n")
    (project / "params.yaml").write_text("task: sst2\n")
    (project / "dvc.yaml").write_text("stages: {}\n")  # what makes a folder a workspace to refresh
    (project / ".gitignore").write_text("/glue/\n/.distilflow/\n")
    git(project, "init", "-q")
    git(project, "add", "-A")
    git(project, "commit", "-qm", "A")
    commit_a = code_commit(project)
    assert commit_a is not None and len(commit_a) == 12
    prepare_workspace(project, workspace, {"task": "sst2"})
    (project / "src" / "stage.py").write_text("VERSION = 'B'\n")  # the project moves on while the task trains
    git(project, "commit", "-qam", "B")
    record = run_record(source_record(workspace), "distilflow glue --tasks sst2")
    assert record["commit"] == commit_a != code_commit(project)
    assert record["command"] == "distilflow glue --tasks sst2" and record["finished_at"].endswith("Z")
    assert json.loads(git(workspace, "show", "HEAD:glue-source.json")) == {"commit": commit_a}  # versioned too
    # The next run copies B, with an uncommitted edit: its record says so.
    (project / "src" / "stage.py").write_text("VERSION = 'B2'\n")
    prepare_workspace(project, workspace, {"task": "sst2"})
    assert source_record(workspace)["commit"] == f"{git(project, 'rev-parse', '--short=12', 'HEAD')}+changes"
    assert (workspace / "src" / "stage.py").read_text() == "VERSION = 'B2'\n"
