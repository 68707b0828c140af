"""The team stack's PostgreSQL: a cluster in .team/postgres, on 127.0.0.1 only, no Unix socket.

PostgreSQL refuses to run as root, so when we are root its programs run as the ``postgres`` account (override with
$DISTILFLOW_TEAM_PG_USER) and the cluster folder is handed to it. Its programs come from ``pg_config --bindir``
(Debian keeps them out of PATH), or $DISTILFLOW_TEAM_PG_BIN.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from distilflow.team.processes import spawn, wait_ready
from distilflow.team.settings import DATABASES, HOST, PG_SUPERUSER, Credentials, Layout, TeamError, write_pgpass

START_S = 60.0


def bindir() -> Path:
    """$DISTILFLOW_TEAM_PG_BIN, else ``pg_config --bindir``, else the newest /usr/lib/postgresql/N/bin (Debian's
    ``postgresql-N`` without libpq-dev has no pg_config), else wherever ``postgres`` is on PATH."""
    configured = os.environ.get("DISTILFLOW_TEAM_PG_BIN")
    if configured:
        return Path(configured)
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        found = Path(subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=True).stdout.strip())
        if (found / "postgres").exists():
            return found
    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda path: int(path.parts[-3]))
    if debian:
        return debian[-1].parent
    on_path = shutil.which("postgres")
    if on_path is None:
        raise TeamError(
            "PostgreSQL not found: install it (Debian: apt-get install postgresql) or set DISTILFLOW_TEAM_PG_BIN"
        )
    return Path(on_path).parent


def os_user() -> str | None:
    """The account PostgreSQL runs as: ``postgres`` when we are root, else ourselves (None: no switch)."""
    return os.environ.get("DISTILFLOW_TEAM_PG_USER", "postgres") if os.geteuid() == 0 else None


def _as_user(command: list[str], user: str | None, log: Path) -> None:
    with log.open("ab") as out:
        done = subprocess.run(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            user=user,
            group=user,
            extra_groups=[] if user else None,
            check=False,
        )
    if done.returncode != 0:
        raise TeamError(f"{command[0]} failed with code {done.returncode}; log {log}:\n{log.read_text()[-2000:]}")


def _prepare_folder(layout: Layout, user: str | None) -> None:
    """The cluster folder, owned by the PostgreSQL account, which must be able to reach it from /."""
    layout.postgres.mkdir(parents=True, exist_ok=True)
    if user is None:
        return
    shutil.chown(layout.postgres, user, user)
    layout.postgres.chmod(0o700)
    probe = subprocess.run(["test", "-w", str(layout.postgres)], user=user, group=user, extra_groups=[], check=False)
    if probe.returncode != 0:
        raise TeamError(
            f"PostgreSQL runs as {user!r} and cannot write {layout.postgres}: a folder above it is not searchable "
            f"by other accounts (chmod o+x it), or put the project elsewhere"
        )


def _initdb(layout: Layout, credentials: Credentials, user: str | None) -> None:
    """A new cluster whose superuser logs in with a password (scram) over TCP; nothing else may log in."""
    pwfile = layout.postgres / "initdb-password"
    pwfile.write_text(credentials.pg_password + "\n")
    if user is not None:
        shutil.chown(pwfile, user, user)
    pwfile.chmod(0o600)
    try:
        command = [
            str(bindir() / "initdb"), "-D", str(layout.postgres / "data"), "-U", PG_SUPERUSER,
            f"--pwfile={pwfile}", "--auth=scram-sha-256", "-E", "UTF8", "--no-locale", "--no-instructions",
        ]  # fmt: skip
        _as_user(command, user, layout.log("postgres-initdb"))
    finally:
        pwfile.unlink(missing_ok=True)


def start(layout: Layout, port: int, credentials: Credentials, echo: Callable[[str], None]) -> subprocess.Popen[bytes]:
    """Create the cluster on first use, start ``postgres`` on HOST:port and return once it accepts logins."""
    user = os_user()
    _prepare_folder(layout, user)
    if not (layout.postgres / "data" / "PG_VERSION").exists():
        echo(f"creating the PostgreSQL cluster in {layout.postgres / 'data'}")
        _initdb(layout, credentials, user)
    write_pgpass(layout, port, credentials.pg_password)
    command = [
        str(bindir() / "postgres"), "-D", str(layout.postgres / "data"), "-p", str(port),
        "-c", f"listen_addresses={HOST}", "-c", "unix_socket_directories=",
    ]  # fmt: skip
    log = layout.log("postgres")
    log.parent.mkdir(parents=True, exist_ok=True)
    process = spawn_as(command, log, layout.postgres, user)
    wait_ready("PostgreSQL", process, log, lambda: _accepts_logins(layout, port), START_S)
    return process


def spawn_as(command: list[str], log: Path, cwd: Path, user: str | None) -> subprocess.Popen[bytes]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"}
    return spawn(command, env, log, cwd, user=user)


def psql(layout: Layout, port: int, sql: str, database: str = "postgres") -> str:
    """Run ``sql`` as the superuser over TCP (password from the stack's pgpass file); return psql's plain output."""
    command = [
        str(bindir() / "psql"),
        "-h",
        HOST,
        "-p",
        str(port),
        "-U",
        PG_SUPERUSER,
        "-d",
        database,
        "-tAX",
        "-c",
        sql,
    ]
    env = {**os.environ, "PGPASSFILE": str(layout.pgpass), "PGCONNECT_TIMEOUT": "5"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise TeamError(f"psql on {HOST}:{port}/{database}: {done.stderr.strip()}")
    return done.stdout


def _accepts_logins(layout: Layout, port: int) -> bool:
    try:
        return psql(layout, port, "SELECT 1").strip() == "1"
    except TeamError:
        return False


def create_databases(layout: Layout, port: int) -> None:
    """MLflow's runs and registry, MLflow's users, Prefect's state: one database each, created once."""
    existing = set(psql(layout, port, "SELECT datname FROM pg_database").split())
    for name in DATABASES:
        if name not in existing:
            psql(layout, port, f'CREATE DATABASE "{name}"')
