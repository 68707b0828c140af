"""Helpers shared by the data-validation tests: fixture folders, a project layout, the CLI both ways."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "glue"
# Everything a later stage produces or the registry holds; a failed validation must leave all of it alone.
DOWNSTREAM = ("data/validated", "data/tokenized", "models", "checkpoints", "predictions", "mlruns.db", "mlartifacts")


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str


@dataclass
class Project:
    """A throwaway project root whose data/raw is a copy of a fixture folder, with downstream outputs present."""

    root: Path

    @property
    def raw(self) -> Path:
        return self.root / "data" / "raw"

    @property
    def report_dir(self) -> Path:
        return self.root / "reports" / "validation"

    def file(self, name: str) -> Path:
        return self.raw / name

    def lines(self, name: str) -> list[str]:
        return self.file(name).read_bytes().decode("utf-8").split("\n")

    def write_lines(self, name: str, lines: list[str]) -> None:
        self.file(name).write_bytes("\n".join(lines).encode("utf-8"))

    def snapshot(self) -> dict[str, str]:
        """sha256 of every downstream file, keyed by path: equal snapshots mean nothing downstream changed."""
        digest: dict[str, str] = {}
        for name in DOWNSTREAM:
            path = self.root / name
            files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
            for file in files:
                digest[str(file.relative_to(self.root))] = hashlib.sha256(file.read_bytes()).hexdigest()
        return digest

    def write_params(self, validate: dict[str, object]) -> Path:
        import yaml

        path = self.root / "params.yaml"
        path.write_text(yaml.safe_dump({"validate": validate}), encoding="utf-8")
        return path


def make_project(tmp_path: Path, task_dir: str) -> Project:
    project = Project(tmp_path / "project")
    shutil.copytree(FIXTURES / task_dir, project.raw)
    # A stage logs its dvc.yaml params (tracking.runs.stage_run), so the project has the pipeline's dvc.yaml.
    shutil.copy(REPO / "dvc.yaml", project.root / "dvc.yaml")
    # Stand-ins for the outputs of a previous successful run.
    for name, content in {
        "data/validated/train.parquet": b"previous validated split",
        "data/tokenized/meta.json": b'{"content_hash": "previous"}',
        "models/teacher/config.json": b"{}",
        "models/student/config.json": b"{}",
        "checkpoints/teacher/step-25/state.pt": b"checkpoint",
        "mlruns.db": b"registry with a champion alias",
    }.items():
        target = project.root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    return project


def cli_args(task: str, project: Project, params: Path | None) -> list[str]:
    args = ["validate", "--task", task, "--data-dir", str(project.raw), "--report-dir", str(project.report_dir)]
    return args + (["--params", str(params)] if params else [])


def run_cli_in_process(args: list[str]) -> CliResult:
    """The real CLI command in this process: same code path, without paying the GX import per case."""
    from typer.testing import CliRunner

    from distilflow.cli import app

    result = CliRunner().invoke(app, args)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return CliResult(result.exit_code, result.stdout, result.stderr)


def run_cli_subprocess(args: list[str], timeout: float = 120) -> CliResult:
    """``python -m distilflow ...`` as a person (or DVC) runs it; works before the package is installed."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")]))
    env["GX_ANALYTICS_ENABLED"] = "false"
    completed = subprocess.run(
        [sys.executable, "-m", "distilflow", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )
    return CliResult(completed.returncode, completed.stdout, completed.stderr)
