"""A command a scratch or GLUE workspace needs fails with ``CommandFailed``: the command, its exit code, its output."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from distilflow.errors import UserError
from distilflow.orchestration.scratch_workspace import CommandFailed, copy_items, run_checked


def test_a_failed_command_names_itself_its_exit_code_and_its_output(tmp_path: Path) -> None:
    script = "import sys; print('out' * 2000); print('the reason', file=sys.stderr); sys.exit(3)"
    with pytest.raises(CommandFailed) as raised:
        run_checked([sys.executable, "-c", script], tmp_path, env={})
    failure = raised.value
    assert (failure.command[-1], failure.returncode) == (script, 3)
    assert "the reason" in failure.output_tail and len(failure.output_tail) < 8100  # a tail, not all of it
    assert "exited 3\n" in str(failure)
    assert isinstance(failure, RuntimeError) and not isinstance(failure, (AssertionError, UserError))
    assert run_checked([sys.executable, "-c", script], tmp_path, env={}, check=False).returncode == 3


def test_copied_items_replace_what_the_target_held(tmp_path: Path) -> None:
    source, target = tmp_path / "source", tmp_path / "target"
    (source / "src" / "__pycache__").mkdir(parents=True)
    (source / "src" / "a.py").write_text("new")
    (source / "src" / "__pycache__" / "a.pyc").write_text("bytecode")
    (source / "params.yaml").write_text("task: sst2\n")
    (target / "src").mkdir(parents=True)
    (target / "src" / "gone.py").write_text("deleted in the source since")
    copy_items(source, target, ("src", "params.yaml", "absent.yaml"))
    assert sorted(path.name for path in (target / "src").iterdir()) == ["a.py"]
    assert (target / "params.yaml").read_text() == "task: sst2\n"
    assert not (target / "absent.yaml").exists()
