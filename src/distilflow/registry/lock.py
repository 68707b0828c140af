"""The lock that makes a promotion's read-gate-move one step for everyone who shares the registry.

A promotion reads ``@champion``, gates against it and moves it. Two promotions of one model must not interleave,
and the lock that keeps them apart must be held where every writer of that registry meets:

- **an sqlite store** (one machine): a file lock beside the store file, so every workspace that registers into
  that store (the project's pipeline, the GLUE suite's workspaces, a second clone) takes the same lock;
- **a tracking server** (a team): a Prefect global concurrency limit of one slot named after the model, held by the
  Prefect server every worker talks to; its lease expires if the holder dies, so a killed worker never blocks the
  others for longer than the lease;
- **a tracking server without a Prefect server**: the workspace's file lock, and a line that says so, because it
  serialises promotions on this machine only.

Every lock is released by the kernel or the lease when its holder dies: a killed register never blocks the next.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

from distilflow.errors import UserError
from distilflow.runtime.store_health import sqlite_path

LOCK_FILE = Path(".distilflow") / "registry.lock"
LEASE_S = 120.0  # a dead holder's slot frees itself after this; a live one renews it
WAIT_S = 600.0  # how long a promotion waits for another to finish before it gives up


class RegistryBusy(UserError, RuntimeError):
    """Another promotion of the same model held the registry lock for longer than this one would wait."""


def lock_name(model: str) -> str:
    return f"distilflow-registry-{model}"


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


class SlotTaken(RuntimeError):
    """A server-held slot that was asked for without waiting is held by someone else."""


@contextlib.contextmanager
def server_slot(name: str, wait_s: float | None) -> Iterator[None]:
    """The one slot of the Prefect server's global concurrency limit ``name`` (made with limit 1 on first use),
    held under a lease that the server frees when its holder dies. ``wait_s=None``: one try, ``SlotTaken`` when held.
    """
    import httpx
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.concurrency._asyncio import ConcurrencySlotAcquisitionError  # raised by the public `concurrency`
    from prefect.concurrency.sync import concurrency
    from prefect.exceptions import ObjectAlreadyExists

    with get_client(sync_client=True) as client, contextlib.suppress(ObjectAlreadyExists):
        client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))
    once = {"max_retries": 0, "timeout_seconds": 60.0} if wait_s is None else {"timeout_seconds": wait_s}
    held = contextlib.ExitStack()
    try:
        held.enter_context(concurrency(name, occupy=1, lease_duration=LEASE_S, strict=True, **once))  # type: ignore[arg-type]
    except ConcurrencySlotAcquisitionError as error:  # Prefect's wrapper of the server's answer
        cause = error.__cause__
        if not (isinstance(cause, httpx.HTTPStatusError) and cause.response.status_code == 423):  # 423: Locked
            raise
        raise SlotTaken(name) from None
    with held:
        yield


@contextlib.contextmanager
def prefect_lock(model: str, wait_s: float = WAIT_S) -> Iterator[None]:
    """One slot of a global concurrency limit on the Prefect server (created with limit 1 on first use)."""
    name = lock_name(model)
    try:
        with server_slot(name, wait_s):
            yield
    except TimeoutError as error:
        raise RegistryBusy(
            f"another promotion of {model} held the Prefect concurrency limit {name!r} for over {wait_s:.0f} s; "
            "nothing was moved. Rerun once it is done (the Prefect UI, Concurrency, shows who holds it)."
        ) from error


def registry_lock(
    tracking_uri: str, model: str, root: Path, wait_s: float = WAIT_S
) -> contextlib.AbstractContextManager[None]:
    """The lock every promotion of ``model`` in the registry at ``tracking_uri`` takes (see the module doc)."""
    scheme = urlparse(tracking_uri).scheme
    if scheme == "sqlite":
        store = sqlite_path(tracking_uri)
        return file_lock(store.parent / f"{store.name}.locks" / f"{model}.lock")
    if scheme in ("http", "https") and os.environ.get("PREFECT_API_URL"):
        return prefect_lock(model, wait_s)
    if scheme in ("http", "https"):
        print(
            f"registry lock: {tracking_uri} is shared but PREFECT_API_URL is unset, so promotions of {model} are "
            "serialised on this machine only (docs/team.md: point every worker at the team's Prefect server)",
            file=sys.stderr,
        )
    return file_lock(Path(root) / LOCK_FILE)
