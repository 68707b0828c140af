"""One team stack for the whole `make test-team` session: started in a git project (the GLUE journey deploys from
its commit), read by every test module, stopped by `test_team_stack.py`'s `down` test (the last one to run: the
modules run in name order) or, whatever happens, by this fixture."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from distilflow.serving.servers import free_port
from distilflow.team import stack
from distilflow.team.settings import Layout, read_state
from tests import conftest

DISTILFLOW = str(Path(sys.executable).parent / "distilflow")
PORT_VARS = ("DISTILFLOW_TEAM_POSTGRES_PORT", "DISTILFLOW_TEAM_MLFLOW_PORT", "DISTILFLOW_TEAM_PREFECT_PORT")
WORKERS = 2


def team(root: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    command = [DISTILFLOW, "team", *args, "--root", str(root)]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, check=False)


@pytest.fixture(scope="session")
def team_env() -> dict[str, str]:
    """Free ports, so the test never meets a developer's own stack on the default ones."""
    return {**conftest.test_env(), **{name: str(free_port()) for name in PORT_VARS}}


@pytest.fixture(scope="session")
def root(team_env: dict[str, str]) -> Iterator[Path]:
    """A committed distilflow project (the tests' tiny settings) with the stack up in it, in a folder the
    ``postgres`` account can reach (pytest's tmp folders are private to root)."""
    base = Path(tempfile.mkdtemp(prefix="distilflow-team-"))
    base.chmod(0o755)
    # The teacher is not registered: the journey is about the students, and each teacher would cost a model upload.
    folder = conftest.make_workspace(base / "project", {"register": {"register_teacher": False}})
    folder.chmod(0o755)
    up = team(folder, team_env, "up", "--workers", str(WORKERS))
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        yield folder
    finally:
        if read_state(Layout(folder)) is not None:
            stack.down(folder)
        shutil.rmtree(base)


def user_env(root: Path) -> dict[str, str]:
    """What `eval "$(distilflow team env)"` exports, read back from the command's own output."""
    lines = subprocess.run([DISTILFLOW, "team", "env", "--root", str(root)], capture_output=True, text=True, check=True)
    exports = [line.removeprefix("export ") for line in lines.stdout.splitlines() if line.startswith("export ")]
    return {key: value.strip("'") for key, _, value in (line.partition("=") for line in exports)}


def prefect_settings(env: dict[str, str]) -> Any:
    """This process's Prefect client pointed at the team's server: Prefect reads its settings once, at import, so
    exporting PREFECT_API_URL afterwards would leave it talking to a temporary server of its own."""
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    wanted = {PREFECT_API_URL: env["PREFECT_API_URL"], PREFECT_API_AUTH_STRING: env["PREFECT_API_AUTH_STRING"]}
    return temporary_settings(wanted)
