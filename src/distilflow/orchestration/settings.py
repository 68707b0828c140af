"""What a flow run is asked to change: a profile, named parameters and ``KEY=VALUE`` overrides, checked up front.

The flow passes the result to ``dvc exp run --set-param``, so every change is a DVC experiment, never an edit of
params.yaml. Prefect facts the flow and the deployment share (flow name, environment defaults) live here too.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import typing
from collections.abc import Mapping
from pathlib import Path

from distilflow.config import yaml_io
from distilflow.config.data_params import DataParams
from distilflow.config.loading import ParamsError, load_params
from distilflow.config.params import flatten
from distilflow.paths import Paths
from distilflow.runtime.locking import LOCK_DIR

FLOW_NAME = "distilflow-pipeline"
FLOW_ENTRYPOINT = "flows/pipeline.py:pipeline"
# Prefect's temporary server needs far more than its default 20 s to migrate a fresh database on a small machine.
# The Makefile exports the same values for the Prefect CLI (a test ties the two).
PREFECT_ENV_DEFAULTS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
}


def prefect_defaults(env: Mapping[str, str] = os.environ) -> dict[str, str]:
    """Prefect's environment defaults that ``env`` does not set already: apply them before Prefect is imported."""
    return {key: value for key, value in PREFECT_ENV_DEFAULTS.items() if key not in env}


def flow_arguments(default_root: str, lock_timeout_s: float) -> argparse.ArgumentParser:
    """``python flows/pipeline.py``'s command line: the flow's parameters, as the Prefect UI shows them."""
    parser = argparse.ArgumentParser(description="Run the distilflow pipeline as a Prefect flow (no server needed).")
    parser.add_argument("root", nargs="?", default=default_root, help="workspace (default: this project)")
    parser.add_argument("--task", help="GLUE task, e.g. sst2 or cola")
    parser.add_argument("--data-source", choices=typing.get_args(DataParams.model_fields["source"].annotation))
    parser.add_argument("--data-path", help="GLUE task folder for --data-source local")
    parser.add_argument("--profile", help="params profile: NAME in flows/profiles/ or a YAML path")
    parser.add_argument(
        "-S",
        "--set-param",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="params.yaml change, as in `dvc exp run --set-param` (repeatable)",
    )
    parser.add_argument(
        "--promote",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="allow or forbid moving @champion (default: params.yaml's register.promote)",
    )
    parser.add_argument("--lock-timeout", type=float, default=lock_timeout_s, metavar="SECONDS")
    parser.add_argument("--no-sync-remote", dest="sync_remote", action="store_false")
    return parser


class SettingsRejected(ValueError):
    """The requested params (profile, overrides) are not valid settings; nothing was changed."""


def settings_overrides(
    task_name: str | None,
    data_source: str | None,
    data_path: str | None,
    profile: str | None,
    overrides: list[str] | None,
    promote: bool | None,
    root: Path,
) -> list[str]:
    """Every requested change as ``KEY=VALUE``: the profile first, then the named parameters, then ``overrides``."""
    result: list[str] = []
    if profile:
        result += profile_overrides(profile, root)
    if task_name is not None:
        result.append(f"task={task_name}")
    if data_source is not None:
        result.append(f"data.source={data_source}")
    if data_path is not None:
        result.append(f"data.path={json.dumps(data_path)}")
    if promote is not None:
        result.append(f"register.promote={str(promote).lower()}")
    return result + list(overrides or [])


def profile_overrides(profile: str, root: Path) -> list[str]:
    """A profile is a YAML file of params to change: NAME in flows/profiles/, or a path."""
    return [f"{key}={json.dumps(value)}" for key, value in flatten(read_profile(profile, root)).items()]


def read_profile(profile: str, root: Path) -> dict[str, typing.Any]:
    """The params a profile changes, as nested sections: NAME in flows/profiles/, or a YAML file's path."""

    profiles = Paths.at(root).profiles_dir
    candidates = [profiles / f"{profile}.yaml", Path(profile), root / profile]
    path = next((candidate for candidate in candidates if candidate.is_file()), None)
    if path is None:
        known = sorted(p.stem for p in profiles.glob("*.yaml"))
        raise SettingsRejected(
            f"no params profile {profile!r}; known: {', '.join(known) or 'none'} "
            f"(in {profiles}), or give a YAML file's path"
        )
    data = yaml_io.load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise SettingsRejected(f"profile {path} must be a mapping of params.yaml sections")
    return data


def checked_overrides(root: Path, overrides: list[str]) -> None:
    """Apply ``KEY=VALUE`` overrides to a scratch copy of params.yaml the way ``dvc exp run --set-param`` will
    (Hydra syntax), and check the result against distilflow's settings. params.yaml itself is never written."""
    from dvc.utils.hydra import apply_overrides

    scratch_parent = root / LOCK_DIR
    scratch_parent.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=scratch_parent) as scratch:
        candidate = Path(scratch) / "params.yaml"
        candidate.write_text(Paths.at(root).params_file.read_text(encoding="utf-8"), encoding="utf-8")
        try:
            apply_overrides(str(candidate), overrides)
            load_params(candidate)
        except ParamsError as error:
            raise SettingsRejected(f"{error}\nNothing was run; params.yaml is unchanged.") from None
        except Exception as error:  # DVC/Hydra raise their own types for a malformed or unknown KEY=VALUE
            raise SettingsRejected(
                f"cannot apply {overrides}: {error} {error.__cause__ or ''}".strip()
                + "\nKeys must already exist in params.yaml, e.g. distill.temperature=3.0. Nothing was run; "
                "params.yaml is unchanged."
            ) from None


# ---------------------------------------------------------------------------------------------- where a run may work

ALLOWED_ROOTS_ENV = "DISTILFLOW_ALLOWED_ROOTS"
"""Workspaces, besides the deployment's own checkout, that a deployed run may use (``os.pathsep``-separated): set in
the worker's environment, or by ``flows/deploy.py --allow-root`` in the deployment's job variables."""


class RootRefused(SettingsRejected):
    """A deployed run asked for a workspace its deployment does not allow; nothing was run."""


def allowed_workspace(root: str, project_root: Path) -> Path:
    """The workspace a flow run may use: any for a run someone started in their own process; for a run of a
    deployment, only the deployment's checkout (``project_root``) or a folder in $DISTILFLOW_ALLOWED_ROOTS.

    ``root`` is a parameter anyone who can start a run sets, and a worker runs ``dvc repro`` there as its own user.
    """
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    flow_run = context.flow_run if context is not None else None
    if flow_run is None or flow_run.deployment_id is None:
        return Path(root).resolve()
    run_env = (flow_run.job_variables or {}).get("env") or {}
    return checked_workspace(root, project_root, os.environ, run_sets_allow_list=ALLOWED_ROOTS_ENV in run_env)


def checked_workspace(root: str, project_root: Path, env: Mapping[str, str], run_sets_allow_list: bool = False) -> Path:
    """``root`` resolved, if a deployed run may use it; else RootRefused naming the folders it may use.

    ``run_sets_allow_list``: the run's own job variables set $DISTILFLOW_ALLOWED_ROOTS. A run may override a
    deployment's job variables, so that value came from whoever started the run, not from whoever deployed.
    """
    if run_sets_allow_list:
        raise RootRefused(
            f"this run sets {ALLOWED_ROOTS_ENV} in its own job variables; only the deployment (flows/deploy.py "
            "--allow-root) or the worker's environment may say where its runs work. Nothing was run."
        )
    workspace = Path(root).resolve()
    allowed = [project_root.resolve()]
    allowed += [Path(entry).resolve() for entry in env.get(ALLOWED_ROOTS_ENV, "").split(os.pathsep) if entry]
    if workspace not in allowed:
        raise RootRefused(
            f"root {workspace} is not a workspace this deployment may run in; allowed: "
            f"{', '.join(str(path) for path in dict.fromkeys(allowed))}. Add a folder with "
            f"`python flows/deploy.py --allow-root PATH` or {ALLOWED_ROOTS_ENV} in the worker's environment. "
            "Nothing was run."
        )
    return workspace
