"""Create (or update) the scheduled deployment of the distilflow pipeline: ``make deploy``.

By default the deployment runs this checkout on a ``process`` work pool (created when missing) every night at
03:00 UTC. The same flow goes to a Docker or Kubernetes work pool by pointing ``--source`` at the git repository
and ``--image`` at an image with the project installed (see docs/orchestration.md).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from distilflow.orchestration.settings import ALLOWED_ROOTS_ENV, FLOW_ENTRYPOINT, FLOW_NAME, prefect_defaults

os.environ.update(prefect_defaults())  # before Prefect is imported

import httpx
from prefect import Flow, flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.exceptions import ObjectNotFound
from prefect.schedules import Cron
from prefect.settings import PREFECT_API_URL

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DEPLOYMENT = "nightly"
DEFAULT_POOL = "distilflow-process"
DEFAULT_CRON = "0 3 * * *"


class DeployError(RuntimeError):
    pass


def check_server() -> str:
    """A deployment on Prefect's throw-away temporary server would vanish with it: insist on a real one."""
    url = PREFECT_API_URL.value()
    if not url:
        raise DeployError(
            "PREFECT_API_URL is not set. Start the server with `make ui` and run "
            "`PREFECT_API_URL=http://127.0.0.1:4200/api make deploy` (make deploy sets it for you)."
        )
    try:
        httpx.get(f"{url.rstrip('/')}/health", timeout=10).raise_for_status()
    except httpx.HTTPError as error:
        raise DeployError(f"no Prefect server answers at {url} ({error}); start one with `make ui`") from None
    return str(url)


def ensure_process_pool(name: str) -> None:
    """Create the process work pool with Prefect's default job template, unless it exists already."""
    from prefect.workers.process import ProcessWorker

    with get_client(sync_client=True) as client:
        try:
            pool = client.read_work_pool(name)
        except ObjectNotFound:
            client.create_work_pool(
                WorkPoolCreate(
                    name=name,
                    type="process",
                    base_job_template=ProcessWorker.get_default_base_job_template(),
                    description="distilflow: flow runs as local processes",
                )
            )
            print(f"created process work pool {name!r}")
            return
    print(f"work pool {name!r} exists (type {pool.type})")


def parse_assignments(items: list[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise DeployError(f"expected KEY=VALUE, got {item!r}")
        try:
            values[key] = json.loads(value)  # lists and booleans: --param 'overrides=["distill.alpha=0.5"]'
        except ValueError:
            values[key] = value
    return values


def deploy(
    name: str = DEFAULT_DEPLOYMENT,
    pool: str = DEFAULT_POOL,
    cron: str = DEFAULT_CRON,
    timezone: str = "UTC",
    root: Path | None = PROJECT_ROOT,
    source: str | None = None,
    image: str | None = None,
    parameters: dict[str, Any] | None = None,
    paused: bool = False,
    concurrency_limit: int | None = None,
    allowed_roots: list[Path] | None = None,
) -> str:
    """Create or update the deployment; returns its id.

    Its runs work in the deployed checkout only, plus ``allowed_roots``: the run's ``root`` parameter is anyone's
    to set, and the worker runs DVC there as its own user (flow_settings.allowed_workspace).
    """
    check_server()
    if image is None:
        ensure_process_pool(pool)
    # A git URL for container pools (each run clones it); this checkout's folder for a process pool.
    code = source or str(root or PROJECT_ROOT)
    pipeline = flow.from_source(source=code, entrypoint=FLOW_ENTRYPOINT)
    assert isinstance(pipeline, Flow)  # from_source returns a coroutine only inside an event loop
    defaults = dict(parameters or {})
    if source is None and root is not None:
        defaults.setdefault("root", str(Path(root).resolve()))
    deployment_id = pipeline.deploy(
        name=name,
        work_pool_name=pool,
        schedules=[Cron(cron, timezone=timezone)],
        parameters=defaults,
        paused=paused,
        concurrency_limit=concurrency_limit,
        job_variables=allowed_roots_variables(allowed_roots or []),
        image=image,
        build=False,
        push=False,
        description="distilflow: validate, fine-tune, evaluate, distill, register (DVC decides what reruns)",
        tags=["distilflow"],
        print_next_steps=False,
    )
    return str(deployment_id)


def allowed_roots_variables(roots: list[Path]) -> dict[str, Any]:
    """The job variables that let the deployment's runs use ``roots`` besides its own checkout."""
    if not roots:
        return {}
    return {"env": {ALLOWED_ROOTS_ENV: os.pathsep.join(str(Path(root).resolve()) for root in roots)}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Create the scheduled Prefect deployment of the distilflow flow.")
    parser.add_argument("--name", default=DEFAULT_DEPLOYMENT, help=f"deployment name (default {DEFAULT_DEPLOYMENT})")
    parser.add_argument("--pool", default=DEFAULT_POOL, help=f"work pool (default {DEFAULT_POOL}, created if missing)")
    parser.add_argument("--cron", default=DEFAULT_CRON, help=f"cron schedule (default {DEFAULT_CRON!r})")
    parser.add_argument("--timezone", default="UTC")
    parser.add_argument("--root", type=Path, default=PROJECT_ROOT, help="workspace the runs use (process pools)")
    parser.add_argument("--source", help="git URL of the project for Docker/Kubernetes pools (runs clone it)")
    parser.add_argument("--image", help="image with the project's dependencies, for Docker/Kubernetes pools")
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="default flow parameter, e.g. --param profile=smoke (repeatable)",
    )
    parser.add_argument(
        "--allow-root",
        dest="allowed_roots",
        action="append",
        default=[],
        type=Path,
        metavar="PATH",
        help="another workspace the runs may use as `root` (repeatable); by default only the deployed checkout",
    )
    parser.add_argument("--paused", action="store_true", help="create the schedule paused")
    parser.add_argument(
        "--concurrency-limit",
        type=int,
        help="at most N runs of this deployment at once (Prefect "
        "queues the rest); the workspace lock serializes runs on one checkout either way",
    )
    args = parser.parse_args(argv)
    try:
        deployment_id = deploy(
            name=args.name,
            pool=args.pool,
            cron=args.cron,
            timezone=args.timezone,
            root=None if args.source else args.root,
            source=args.source,
            image=args.image,
            parameters=parse_assignments(args.param),
            paused=args.paused,
            concurrency_limit=args.concurrency_limit,
            allowed_roots=args.allowed_roots,
        )
    except DeployError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    full_name = f"{FLOW_NAME}/{args.name}"
    print(f"deployment {full_name} ({deployment_id}) on pool {args.pool!r}, schedule {args.cron!r} {args.timezone}")
    print("next steps:")
    print(f"  prefect worker start --pool {args.pool}       # or `make worker`; stop it with Ctrl-C (SIGINT)")
    print(f"  prefect deployment run '{full_name}' --watch   # trigger a run now and follow it")
    print(f"  open {str(PREFECT_API_URL.value()).removesuffix('/api')}/deployments")
    return 0


if __name__ == "__main__":
    sys.exit(main())
