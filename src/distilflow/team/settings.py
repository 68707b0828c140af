"""Where the team stack keeps its state, which ports and credentials it uses, and what a user exports to reach it.

Everything lives in one git-ignored folder (``.team/`` in the project): the PostgreSQL cluster, the artifact store,
the DVC remote folder, logs, pids and the credentials. Credentials come from the environment or are generated once
and written there with mode 0600, never anywhere git could pick them up.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

TEAM_DIR = ".team"
DEFAULT_POOL = "distilflow-process"  # the pool `make deploy` / flows/deploy.py target by default
PG_SUPERUSER = "distilflow"
DATABASES = ("mlflow", "mlflow_auth", "prefect")
# Fixed defaults, so the URLs a team shares stay the same across restarts; each can be changed by its variable.
DEFAULT_PORTS = {"postgres": 55432, "mlflow": 5050, "prefect": 4250}
PORT_ENV = {name: f"DISTILFLOW_TEAM_{name.upper()}_PORT" for name in DEFAULT_PORTS}
DVC_REMOTE_ENV = "DISTILFLOW_TEAM_DVC_REMOTE"
HOST = "127.0.0.1"


class TeamError(RuntimeError):
    """The stack could not be started, stopped or read; the message says what to do."""


@dataclass(frozen=True)
class Layout:
    """The files and folders of one stack under ``root``/.team."""

    root: Path

    @property
    def base(self) -> Path:
        return self.root / TEAM_DIR

    @property
    def state(self) -> Path:
        return self.base / "state.json"

    @property
    def credentials(self) -> Path:
        return self.base / "credentials.json"

    @property
    def pgpass(self) -> Path:
        return self.base / "pgpass"

    @property
    def postgres(self) -> Path:
        """Owned by the PostgreSQL account when we are root: the cluster (``data/``) only."""
        return self.base / "postgres"

    @property
    def auth_ini(self) -> Path:
        return self.base / "basic_auth.ini"

    @property
    def artifacts(self) -> Path:
        return self.base / "mlflow-artifacts"

    @property
    def dvc_remote(self) -> Path:
        return self.base / "dvc-remote"

    @property
    def prefect_home(self) -> Path:
        return self.base / "prefect"

    def log(self, name: str) -> Path:
        return self.base / "logs" / f"{name}.log"


@dataclass(frozen=True)
class Credentials:
    pg_password: str
    mlflow_user: str
    mlflow_password: str
    flask_secret: str
    prefect_auth: str  # "user:password", Prefect 3's basic authentication

    @property
    def mlflow_env(self) -> dict[str, str]:
        return {"MLFLOW_TRACKING_USERNAME": self.mlflow_user, "MLFLOW_TRACKING_PASSWORD": self.mlflow_password}


def _secret() -> str:
    return secrets.token_urlsafe(24)


def _write_private(path: Path, text: str) -> None:
    """Create ``path`` readable by its owner only, before any secret is written into it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def load_credentials(layout: Layout, env: dict[str, str]) -> Credentials:
    """The stack's credentials: the stored ones, or on the first `up` the environment's, else random ones.

    MLflow writes its admin account into its auth database on first start, so the credentials are fixed from then
    on: a different DISTILFLOW_MLFLOW_ADMIN_USER / _PASSWORD later is refused rather than silently ignored.
    """
    wanted = {
        "mlflow_user": env.get("DISTILFLOW_MLFLOW_ADMIN_USER"),
        "mlflow_password": env.get("DISTILFLOW_MLFLOW_ADMIN_PASSWORD"),
    }
    if layout.credentials.exists():
        stored = Credentials(**json.loads(layout.credentials.read_text()))
        changed = [key for key, value in wanted.items() if value and value != getattr(stored, key)]
        if changed:
            raise TeamError(
                f"{layout.credentials} holds other MLflow admin credentials than DISTILFLOW_MLFLOW_ADMIN_USER/"
                f"_PASSWORD ({', '.join(changed)}): they are fixed at the first `team up`. Change them with "
                f"MLflow's user API, or delete {layout.base} to start a new, empty stack."
            )
        return stored
    created = Credentials(
        pg_password=env.get("DISTILFLOW_TEAM_PG_PASSWORD") or _secret(),
        mlflow_user=wanted["mlflow_user"] or "admin",
        mlflow_password=wanted["mlflow_password"] or _secret(),
        flask_secret=_secret(),
        prefect_auth=env.get("DISTILFLOW_PREFECT_AUTH_STRING") or f"admin:{_secret()}",
    )
    _write_private(layout.credentials, json.dumps(asdict(created), indent=2) + "\n")
    return created


def write_pgpass(layout: Layout, port: int, password: str) -> None:
    """libpq's password file: MLflow (psycopg2), Prefect (asyncpg) and psql read it through $PGPASSFILE, so no
    password appears in a database URL, a command line or `ps`."""
    _write_private(layout.pgpass, f"{HOST}:{port}:*:{PG_SUPERUSER}:{password}\n")


AUTH_CACHE_TTL_S = 60


def write_auth_ini(layout: Layout, port: int, credentials: Credentials) -> None:
    """MLflow's basic-auth configuration: READ for everyone, its users in the same PostgreSQL as the runs."""
    _write_private(
        layout.auth_ini,
        "[mlflow]\n"
        "default_permission = READ\n"
        f"database_uri = {database_url('mlflow_auth', port)}\n"
        f"admin_username = {credentials.mlflow_user}\n"
        f"admin_password = {credentials.mlflow_password}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        # Each request's password check is a PBKDF2 hash (tens of ms of CPU): registering a model makes hundreds
        # of requests (one per artifact file). Cached per server process for a minute, so a changed or revoked
        # password may still pass for up to that long on a worker process that did not handle the change.
        f"auth_cache_ttl_seconds = {AUTH_CACHE_TTL_S}\n",
    )


def database_url(name: str, port: int, driver: str = "postgresql") -> str:
    """A URL without the password (libpq and asyncpg find it in $PGPASSFILE)."""
    return f"{driver}://{PG_SUPERUSER}@{HOST}:{port}/{name}"


def ports(env: dict[str, str]) -> dict[str, int]:
    """Each server's port: $DISTILFLOW_TEAM_<NAME>_PORT or its fixed default."""
    chosen = {}
    for name, default in DEFAULT_PORTS.items():
        raw = env.get(PORT_ENV[name], "")
        if raw and not raw.isdigit():
            raise TeamError(f"{PORT_ENV[name]}={raw!r}: expected a port number")
        chosen[name] = int(raw) if raw else default
    return chosen


def dvc_remote_url(layout: Layout, env: dict[str, str]) -> str:
    """The team's DVC remote: $DISTILFLOW_TEAM_DVC_REMOTE (``s3://bucket/path`` for real object storage) or a
    folder standing for it."""
    return env.get(DVC_REMOTE_ENV) or str(layout.dvc_remote)


def read_state(layout: Layout) -> dict[str, Any] | None:
    if not layout.state.exists():
        return None
    state: dict[str, Any] = json.loads(layout.state.read_text())
    return state


def write_state(layout: Layout, state: dict[str, Any]) -> None:
    """Written after every server that starts, so a `down` after a failed `up` still finds what did start."""
    tmp = layout.state.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    tmp.replace(layout.state)


def user_env(state: dict[str, Any], credentials: Credentials) -> dict[str, str]:
    """What a user (or a worker) exports to use the stack: `eval "$(distilflow team env)"`."""
    return {
        "MLFLOW_TRACKING_URI": state["urls"]["mlflow"],
        **credentials.mlflow_env,
        "PREFECT_API_URL": f"{state['urls']['prefect']}/api",
        "PREFECT_API_AUTH_STRING": credentials.prefect_auth,
        "DISTILFLOW_MLFLOW_UI": state["urls"]["mlflow"],
        DVC_REMOTE_ENV: state["dvc_remote"],  # the GLUE suite's workspaces push to it and pull from it
    }
