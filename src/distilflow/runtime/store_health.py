"""Is the MLflow store usable? Answered once, in seconds, with a message naming the fault, before a stage writes.

Without this check a corrupt ``mlruns.db`` surfaces as SQLAlchemy's raw traceback from deep inside MLflow, and an
unreachable tracking server as about 250 s of silence while MLflow's HTTP client retries with backoff. Neither
tells a person what to do. Only the standard library is imported here: the check runs before MLflow is.
"""

from __future__ import annotations

import sqlite3
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import unquote, urlparse

from distilflow.errors import UserError

SQLITE_HEADER = b"SQLite format 3\x00"
PROBE_TIMEOUT_S = 5.0
PROBE_TRIES = 3


class StoreUnavailable(UserError, RuntimeError):
    """The MLflow store cannot be used (corrupt, unreachable): nothing was written to it."""


def check_store(uri: str) -> None:
    """Raise :class:`StoreUnavailable` with the fault and the way out; return quietly for a usable store."""
    scheme = urlparse(uri).scheme
    if scheme == "sqlite":
        check_sqlite(sqlite_path(uri))
    elif scheme in ("http", "https"):
        check_server(uri)


def sqlite_path(uri: str) -> Path:
    """The file of ``sqlite:///relative`` or ``sqlite:////absolute``."""
    return Path(unquote(uri.removeprefix("sqlite:///")))


def check_sqlite(path: Path) -> None:
    if not path.exists() or path.stat().st_size == 0:
        return  # MLflow creates it on first use
    aside = f"move {path} aside (it holds the registry: keep it for recovery) and restore it from a backup"
    with path.open("rb") as handle:
        header = handle.read(len(SQLITE_HEADER))
    if header != SQLITE_HEADER:
        raise StoreUnavailable(
            f"the MLflow store {path} is not an SQLite database (corrupt or overwritten: its first bytes are "
            f"{header[:8]!r}); nothing was written. {aside.capitalize()}, or let the next run start an empty store."
        )
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2) as connection:
            problems = [row[0] for row in connection.execute("PRAGMA quick_check(5)")]
    except sqlite3.DatabaseError as error:
        if "locked" in str(error):
            return  # another writer holds it for now: MLflow waits for it and says so if it must give up
        raise StoreUnavailable(
            f"the MLflow store {path} cannot be read ({error}); nothing was written. {aside}."
        ) from None
    if problems != ["ok"]:
        raise StoreUnavailable(
            f"the MLflow store {path} is damaged (sqlite quick_check: {'; '.join(problems)}); nothing was written. "
            f"{aside}."
        )


def check_server(uri: str) -> None:
    """A tracking server answers its health endpoint (any HTTP answer, 401 included, means it is up)."""
    health = uri.rstrip("/") + "/health"
    started, error = time.monotonic(), ""
    for attempt in range(PROBE_TRIES):
        try:
            with urllib.request.urlopen(health, timeout=PROBE_TIMEOUT_S):
                return
        except urllib.error.HTTPError:
            return  # it answered: authentication and the rest are MLflow's to report
        except (urllib.error.URLError, OSError) as failure:
            error = str(getattr(failure, "reason", failure))
        if attempt + 1 < PROBE_TRIES:
            time.sleep(1.0)
    raise StoreUnavailable(
        f"the MLflow tracking server {uri} is unreachable ({error}; {PROBE_TRIES} tries in "
        f"{time.monotonic() - started:.0f} s); nothing was written. Start it (docs/orchestration.md, team setup) or "
        "unset MLFLOW_TRACKING_URI to use this project's own store."
    )


def store_fault(error: BaseException) -> str | None:
    """A person's message for an sqlite store failure anywhere in ``error``'s chain, or None for other errors.

    MLflow lets SQLAlchemy's errors through from its sqlite store; the sqlite error is their cause (``orig``).
    """
    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, sqlite3.OperationalError) and "locked" in str(current):
            return (
                'the MLflow store is locked by another process (sqlite: "database is locked"; one writer at a time). '
                "Rerun once the other run is done: a rerun completes what this one began. A team shares a "
                "tracking server instead (docs/orchestration.md)."
            )
        if isinstance(current, sqlite3.DatabaseError):
            return (
                f"the MLflow store failed: sqlite says {current}. Check the store file (distilflow models) and rerun."
            )
        orig = getattr(current, "orig", None)
        pending += [current.__cause__, current.__context__, orig if isinstance(orig, BaseException) else None]
    return None
