"""`distilflow --help` and every command start fast: nothing heavy is imported before a command needs it."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("torch", "transformers", "mlflow", "great_expectations", "pandas", "datasets", "pydantic", "prefect")


def test_importing_the_cli_imports_no_heavy_library() -> None:
    probe = f"import sys, distilflow.cli; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    assert loaded == []


def test_help_lists_the_commands() -> None:
    result = subprocess.run([sys.executable, "-m", "distilflow.cli", "--help"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert all(command in result.stdout for command in ("stage", "validate", "promote", "rollback", "lineage"))
