"""What DVC versions and what git versions, checked on this repository's own dvc.yaml and ignore files (no repro)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from dvc.repo import Repo

from distilflow.glue.suite import FLOW_ONLY_SECTIONS
from distilflow.registry.lineage import LineageError, parse_model_ref
from tests.conftest import REPO_ROOT

# Big or binary outputs live in the DVC cache; small readable results are committed to git like DVC's example project.
CACHED_PREFIXES = ("data/", "models/", "predictions/")
GIT_PREFIXES = ("metrics/", "plots/", "reports/")
# Small, but cached: a stage's MLflow run ids. DVC saves no run-cache entry for a stage with an uncached output, and
# these are what lets a second machine restore a stage from the first one's run cache (docs/dvc.md).
LINEAGE_PREFIX = "reports/lineage/"


@pytest.fixture(scope="module")
def outs() -> Iterator[list[tuple[str, bool, str]]]:
    with Repo(str(REPO_ROOT)) as repo:
        yield [(out.def_path, bool(out.use_cache), out.stage.addressing) for out in repo.index.outs]


def git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=False)


def test_large_outputs_are_cached_and_small_results_are_git_files(outs: list[tuple[str, bool, str]]) -> None:
    assert outs, "dvc.yaml declares no outputs"
    for path, cached, stage in outs:
        if path.startswith(LINEAGE_PREFIX):
            assert cached, f"{stage}: {path} is lineage; cached, or its stage leaves the run cache"
        elif path.startswith(GIT_PREFIXES):
            assert not cached, f"{stage}: {path} is a small result; declare it cache: false so git versions it"
        elif path.startswith(("data/", "models/")):
            assert cached, f"{stage}: {path} is data or a model; it belongs in the DVC cache, not in git"
        else:
            assert path.startswith(CACHED_PREFIXES), f"{stage}: {path} is outside the known output folders"


def test_cached_outputs_are_ignored_by_committed_gitignores(outs: list[tuple[str, bool, str]]) -> None:
    """A fresh clone must already ignore every cached output, or `git status` is dirty after `make pipeline`."""
    for path, cached, stage in outs:
        check = git("check-ignore", "--no-index", "-v", path)
        if not cached:
            assert check.returncode == 1, f"{stage}: {path} is cache: false but git ignores it ({check.stdout.strip()})"
            continue
        assert check.returncode == 0, f"{stage}: {path} is cached but no .gitignore lists it"
        source = check.stdout.split(":", 1)[0]
        assert source.endswith(".gitignore") and not source.startswith(".git/"), check.stdout
        tracked = git("ls-files", "--error-unmatch", source)
        assert tracked.returncode == 0, f"{source} ignores {path} but is not committed; commit it"


def test_dvc_internal_files_are_ignored() -> None:
    for path in (".dvc/cache", ".dvc/tmp", ".dvc/config.local"):
        assert git("check-ignore", "-q", "--no-index", path).returncode == 0, path
    for path in (".dvc/config", ".dvc/plots/calibration.json", "dvc.lock", "dvc.yaml", "params.yaml"):
        assert git("check-ignore", "-q", "--no-index", path).returncode == 1, path


def test_default_remote_is_a_folder_outside_the_repo() -> None:
    with Repo(str(REPO_ROOT)) as repo:
        config = repo.config
        default = config["core"].get("remote")
        assert default == "local"
        url = Path(config["remote"][default]["url"]).expanduser().resolve()
    assert url.is_absolute()
    assert REPO_ROOT not in url.parents and url != REPO_ROOT, f"remote {url} is inside the repository"


def _plot_files(definition: dict[str, Any]) -> list[str]:
    y = definition.get("y")
    return list(y) if isinstance(y, dict) else []


def test_top_level_plots_read_stage_outputs_and_known_templates(outs: list[tuple[str, bool, str]]) -> None:
    pipeline = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())
    declared = {path for path, _, _ in outs}
    builtin = {
        "simple",
        "linear",
        "smooth",
        "confusion",
        "confusion_normalized",
        "scatter",
        "scatter_jitter",
        "bar_horizontal",
        "bar_horizontal_sorted",
    }
    assert pipeline.get("plots"), "dvc.yaml has no top-level plots"
    for entry in pipeline["plots"]:
        ((name, definition),) = entry.items()
        files = _plot_files(definition)
        assert files, f"plot {name} names no files"
        for file in files:
            assert file in declared, f"plot {name}: {file} is not an output of any stage"
        template = definition.get("template", "linear")
        if template not in builtin:
            custom = REPO_ROOT / ".dvc" / "plots" / f"{template}.json"
            assert custom.is_file(), f"plot {name}: template {template} not in .dvc/plots"
            json.loads(custom.read_text())


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("distilflow-sst2-student@champion", ("distilflow-sst2-student", "champion", None)),
        ("models:/distilflow-sst2-student@challenger", ("distilflow-sst2-student", "challenger", None)),
        ("distilflow-sst2-teacher/3", ("distilflow-sst2-teacher", None, "3")),
    ],
)
def test_lineage_model_references(ref: str, expected: tuple[str, str | None, str | None]) -> None:
    assert parse_model_ref(ref) == expected


@pytest.mark.parametrize("ref", ["distilflow-sst2-student", "a@", "a/b", "@champion", "a@b@c"])
def test_lineage_rejects_malformed_references(ref: str) -> None:
    with pytest.raises(LineageError, match="NAME@ALIAS"):
        parse_model_ref(ref)


def _leaf_keys(node: Any, prefix: str = "") -> list[str]:
    if isinstance(node, dict) and node:
        return [key for name, child in node.items() for key in _leaf_keys(child, f"{prefix}{name}.")]
    return [prefix.rstrip(".")]


def test_every_param_feeds_a_stage_so_exp_set_param_reruns_something() -> None:
    """`dvc exp run -S KEY=...` only reruns stages that list KEY (or a parent of it) under params:."""
    with Repo(str(REPO_ROOT)) as repo:
        listed = {name for stage in repo.index.stages for dep in stage.params for name in dep.params}
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    stage_params = {section: value for section, value in params.items() if section not in FLOW_ONLY_SECTIONS}
    orphans = [
        key for key in _leaf_keys(stage_params) if not any(key == name or key.startswith(name + ".") for name in listed)
    ]
    assert orphans == [], f"params no stage reads (dvc exp run -S would change nothing): {orphans}"
    # The flows' own sections are read by no stage: editing them must rerun nothing.
    assert not [name for name in listed if name.split(".")[0] in FLOW_ONLY_SECTIONS]
    assert set(FLOW_ONLY_SECTIONS) <= params.keys()
