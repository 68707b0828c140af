"""`distilflow team up|down|status|env`: argument parsing only; the work is in `distilflow.team.stack`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from distilflow.team.settings import DEFAULT_POOL, TeamError

team_app = typer.Typer(
    help="The team stack on 127.0.0.1: PostgreSQL, MLflow (basic auth), Prefect and process workers (docs/team.md).",
    no_args_is_help=True,
)
Root = Annotated[Path, typer.Option("--root", help="project folder; the stack's state lives in ROOT/.team")]


def _fail(error: TeamError) -> None:
    typer.secho(str(error), fg=typer.colors.RED, err=True)
    raise typer.Exit(1)


@team_app.command()
def up(
    workers: Annotated[int, typer.Option(help="process workers in the pool", min=0)] = 2,
    pool: Annotated[str, typer.Option(help="the Prefect work pool the workers serve")] = DEFAULT_POOL,
    root: Root = Path("."),
) -> None:
    """Start the stack (or say it is up). Ports: DISTILFLOW_TEAM_{POSTGRES,MLFLOW,PREFECT}_PORT."""
    from distilflow.team import stack

    try:
        stack.up(root, workers=workers, pool=pool, echo=typer.echo)
    except TeamError as error:
        _fail(error)


@team_app.command()
def down(root: Root = Path(".")) -> None:
    """Stop every process of the stack (its data stays in .team/) and check that none is left."""
    from distilflow.team import stack

    try:
        stack.down(root, echo=typer.echo)
    except TeamError as error:
        _fail(error)


@team_app.command()
def status(root: Root = Path(".")) -> None:
    """Each process of the stack and whether it runs; exits 1 unless all of them do."""
    from distilflow.team import stack

    if not stack.status(root, echo=typer.echo):
        raise typer.Exit(1)


@team_app.command()
def env(root: Root = Path(".")) -> None:
    """`export` lines for the stack's URLs and credentials: eval "$(distilflow team env)"."""
    from distilflow.team import stack

    try:
        typer.echo(stack.env_lines(root))
    except TeamError as error:
        _fail(error)
