"""The ``distilflow`` command: one entry point for DVC stages, ad-hoc validation and registry operations."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from distilflow.paths import Paths
from distilflow.team.commands import team_app

app = typer.Typer(
    help="distilflow: validate a GLUE dataset, fine-tune a BERT teacher, distill BERT-tiny, register and serve it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(team_app, name="team")  # the team stack: docs/team.md

RootOption = Annotated[Path, typer.Option("--root", help="project folder holding params.yaml and the outputs")]


def _fail(message: str, code: int = 1) -> None:
    typer.secho(message, fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


@app.command()
def stage(
    name: Annotated[str, typer.Argument(help="a stage of dvc.yaml (`dvc dag` shows them)")],
    model: Annotated[str | None, typer.Option(help="evaluate only: which model to score (teacher|student)")] = None,
    root: RootOption = Path("."),
    params_file: Annotated[Path | None, typer.Option("--params", help="default: ROOT/params.yaml")] = None,
) -> None:
    """Run one pipeline stage with the settings in params.yaml (this is what dvc.yaml calls)."""
    from distilflow.runtime.dispatch import stage_command

    params = str(params_file) if params_file is not None else None
    raise typer.Exit(stage_command(name, str(root), params, model))


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def warm(ctx: typer.Context) -> None:
    """Run a command with a warm stage host, e.g. `distilflow warm dvc repro`: its stages skip ~6 s of imports each.

    The Prefect flow (`make pipeline`) does this for its own stages; a stage that the host cannot serve exactly as
    a fresh process would (another environment, newer distilflow code) runs in a fresh process as before.
    """
    from distilflow.runtime.host import run_warm

    if not ctx.args:
        _fail("give the command to run, e.g. distilflow warm dvc repro", 2)
    raise typer.Exit(run_warm(list(ctx.args)))


@app.command()
def validate(
    task: Annotated[str, typer.Option(help="GLUE task name, e.g. sst2, cola, mrpc, stsb")],
    data_dir: Annotated[Path, typer.Option(help="folder with the task's GLUE files (train.tsv, dev.tsv, ...)")],
    report_dir: Annotated[Path | None, typer.Option(help="write the HTML report and JSON summary here")] = None,
    params_file: Annotated[Path | None, typer.Option("--params", help="validate.* settings from this file")] = None,
    limit: Annotated[int, typer.Option(help="failing rows listed per rule")] = 20,
) -> None:
    """Check any GLUE folder with the pipeline's rules, without running the pipeline."""
    from distilflow.config.data_params import ValidateParams
    from distilflow.config.loading import ParamsError, load_params
    from distilflow.data.validation import validate_folder
    from distilflow.tasks import get_task

    try:
        glue_task = get_task(task)
        settings = load_params(params_file).validate_ if params_file else ValidateParams()
    except (ValueError, ParamsError) as error:
        _fail(str(error), 2)
    if not data_dir.is_dir():
        _fail(f"--data-dir {data_dir}: not a folder", 2)
    report = validate_folder(glue_task, data_dir, settings, report_dir=report_dir)
    if report.ok:
        typer.echo(report.format_findings(limit))
        return
    _fail(report.format_findings(limit))


RoleOption = Annotated[str, typer.Option(help="student or teacher")]


def _registry(root: Path, role: str) -> tuple[Any, str, Any]:
    """The MLflow client on the project's store, the registered model name for ROLE, and the params."""
    import mlflow

    from distilflow.config.loading import ParamsError, load_params
    from distilflow.registry.aliases import model_name
    from distilflow.runtime.store_health import StoreUnavailable
    from distilflow.tracking.runs import configure_mlflow

    if role not in ("student", "teacher"):
        _fail(f"--role must be student or teacher, not {role!r}", 2)
    paths = Paths.at(root)
    try:
        params = load_params(paths.params_file)
    except ParamsError as error:
        _fail(str(error), 2)
    try:
        configure_mlflow(params, paths)
    except StoreUnavailable as error:
        _fail(str(error))
    except mlflow.exceptions.MlflowException as error:
        status = error.get_http_status_code()
        hint = (
            " (a team server: set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD)"
            if status in (401, 403)
            else ""
        )
        _fail(f"cannot use the registry: {str(error.message).splitlines()[0][:300]}{hint}; nothing was changed")
    return mlflow.MlflowClient(), model_name(params.task, role, params.register_.model_prefix), params


@app.command()
def promote(
    version: Annotated[str, typer.Argument(help="model version to make champion")],
    force: Annotated[
        bool, typer.Option("--force", help="promote even if the gate refuses or it was rolled back (recorded in tags)")
    ] = False,
    role: RoleOption = "student",
    root: RootOption = Path("."),
) -> None:
    """Make VERSION the champion. A student version must pass the promotion gate unless --force is given."""
    from distilflow.registry.aliases import (
        ChampionChanged,
        RegistryError,
        RegistryUnavailable,
        current_champion,
        restart_hint,
    )
    from distilflow.registry.aliases import promote as promote_version
    from distilflow.registry.gate import gate_version, record_decision
    from distilflow.registry.lock import RegistryBusy, registry_lock
    from distilflow.tracking.runs import tracking_uri

    client, name, params = _registry(root, role)
    how = "manual"
    try:
        with registry_lock(tracking_uri(params, Paths.at(root)), name, Paths.at(root).root):
            champion = current_champion(client, name)
            expected = str(champion.version) if champion is not None else None
            if role == "student":
                decision = gate_version(client, name, version, params.register_.promotion)
                for reason in decision.reasons:
                    typer.echo(f"  {'✓' if decision.promote else '·'} {reason}")
                if not decision.promote:
                    if not force:
                        _fail(f"the gate refuses {name} v{version}; champion unchanged (--force overrules it)")
                    how = "manual --force over a refusing gate"
                record_decision(client, name, version, decision)
            previous = promote_version(client, name, version, expected=expected, how=how, force=force)
    except RegistryError as error:
        _fail(str(error), 2)
    except (RegistryUnavailable, ChampionChanged, RegistryBusy) as error:
        _fail(str(error))
    typer.echo(f"{name}@champion → v{version} (was {f'v{previous}' if previous else 'none'})")
    typer.echo(restart_hint(name))


@app.command()
def rollback(
    role: RoleOption = "student",
    root: RootOption = Path("."),
) -> None:
    """Point champion back at the version it replaced and mark the demoted version (only --force restores it)."""
    from distilflow.registry.aliases import RegistryError, RegistryUnavailable, restart_hint
    from distilflow.registry.aliases import rollback as rollback_version
    from distilflow.registry.lock import RegistryBusy, registry_lock
    from distilflow.tracking.runs import tracking_uri

    client, name, params = _registry(root, role)
    try:
        with registry_lock(tracking_uri(params, Paths.at(root)), name, Paths.at(root).root):
            demoted, restored = rollback_version(client, name)
    except (RegistryError, RegistryUnavailable, RegistryBusy) as error:
        _fail(str(error))
    typer.echo(f"{name}@champion → v{restored} (was v{demoted}); v{demoted} is marked rolled back")
    typer.echo(restart_hint(name))


@app.command()
def models(
    role: RoleOption = "student",
    root: RootOption = Path("."),
) -> None:
    """List the registered versions: aliases, primary metric, latency, the gate's verdict."""
    from distilflow.registry.aliases import RegistryError, RegistryUnavailable, version_rows

    client, name, _ = _registry(root, role)
    try:
        rows = version_rows(client, name)
    except (RegistryError, RegistryUnavailable) as error:
        _fail(str(error))
    typer.echo(name)
    headers = ["version", "aliases", "metric", "p95_ms", "gate", "previous", "created"]
    widths = {key: max(len(key), *(len(row[key]) for row in rows)) for key in headers}
    typer.echo("  ".join(key.ljust(widths[key]) for key in headers))
    for row in rows:
        typer.echo("  ".join(row[key].ljust(widths[key]) for key in headers))


@app.command("sync-registry")
def sync_registry(root: RootOption = Path(".")) -> None:
    """Register models/student in this clone's MLflow store if it lacks it (after `dvc pull` skipped the stage)."""
    from distilflow.config.loading import ParamsError, load_params
    from distilflow.registry.registration import sync
    from distilflow.runtime.process import configure_hub

    paths = Paths.at(root)
    try:
        params = load_params(paths.params_file)
    except ParamsError as error:
        _fail(str(error), 2)
    configure_hub(params, paths.root)
    try:
        sync(params, paths)
    except FileNotFoundError as error:
        _fail(str(error))


@app.command()
def serve(
    port: Annotated[
        int | None, typer.Option(help="default: env DISTILFLOW_SERVE_PORT, else register.serving.port")
    ] = None,
    alias: Annotated[str, typer.Option(help="registry alias to serve")] = "champion",
    role: RoleOption = "student",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print the command, do not start it")] = False,
    root: RootOption = Path("."),
) -> None:
    """Serve NAME@ALIAS with `mlflow models serve --env-manager local` on 127.0.0.1 (what `make serve` runs)."""
    import os
    import shlex

    from mlflow.exceptions import MlflowException

    from distilflow.registry.aliases import RegistryUnavailable, current_champion, is_missing, unavailable
    from distilflow.serving.servers import serve_command, serve_env
    from distilflow.tracking.runs import tracking_uri

    client, name, params = _registry(root, role)
    settings = params.register_.serving
    chosen = port or int(os.environ.get("DISTILFLOW_SERVE_PORT") or settings.port)
    try:
        found = (
            current_champion(client, name) if alias == "champion" else client.get_model_version_by_alias(name, alias)
        )
    except RegistryUnavailable as error:  # a broken store is not "no champion": say which it is
        _fail(str(error))
    except MlflowException as error:
        if not is_missing(error):
            _fail(str(unavailable(error, f"reading {name}@{alias}")))
        found = None
    if found is None:
        _fail(
            f"{name} has no @{alias} in {tracking_uri(params, Paths.at(root))}: run the pipeline (make pipeline) "
            "or `distilflow promote VERSION`"
        )
    assert found is not None
    command = serve_command(f"models:/{name}@{alias}", chosen, workers=settings.workers)
    uri = tracking_uri(params, Paths.at(root))
    typer.echo(f"serving {name}@{alias} (v{found.version}) from {uri}\n$ {shlex.join(command)}", err=True)
    if dry_run:
        return
    os.execvpe(command[0], command, serve_env(uri, access_log=settings.access_log))


@app.command()
def lineage(
    model: Annotated[str, typer.Argument(help="NAME@ALIAS or NAME/VERSION, e.g. distilflow-sst2-student@champion")],
    root: RootOption = Path("."),
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of text")] = False,
) -> None:
    """Which data version (DVC md5, manifest, git commit of dvc.lock), params and commit made a registered model."""
    import json

    import mlflow

    from distilflow.config.loading import ParamsError, load_params
    from distilflow.registry.lineage import LineageError, format_lineage, model_lineage
    from distilflow.tracking.runs import configure_mlflow

    paths = Paths.at(root)
    try:
        params = load_params(paths.params_file)
    except ParamsError as error:
        _fail(str(error), 2)
    configure_mlflow(params, paths)
    try:
        found = model_lineage(mlflow.MlflowClient(), model, paths.root)
    except LineageError as error:
        _fail(str(error), 2)
    typer.echo(json.dumps(found.as_dict(), indent=2) if as_json else format_lineage(found))


@app.command()
def glue(
    glue_dir: Annotated[
        Path | None,
        typer.Option(
            "--glue-dir", help="one folder per GLUE task (SST-2, CoLA, ... or sst2, mrpc, ...); default glue.root"
        ),
    ] = None,
    tasks: Annotated[
        str | None, typer.Option(help="comma-separated tasks, e.g. sst2,cola; default params.yaml glue.tasks")
    ] = None,
    profile: Annotated[
        str | None, typer.Option(help="applied to every task after its recipe: NAME in flows/profiles/ or a YAML path")
    ] = None,
    root: Annotated[
        Path,
        typer.Option(
            "--root",
            help="the project the suite works on: its params.yaml, recipes, MLflow store and table (the flow is "
            "this distilflow's)",
        ),
    ] = Path("."),
    pool: Annotated[
        str | None,
        typer.Option(
            help="a Prefect work pool: every task at once, one flow run each, from this project's commit "
            "(docs/team.md); default: one after another in this process"
        ),
    ] = None,
) -> None:
    """Run the pipeline on every GLUE task folder found (one Prefect subflow and workspace per task) and write
    reports/glue.md, metrics/glue.json and plots/glue.png. Exits 1 if a task failed; the summary says why."""
    # The flow is this distilflow's own (distilflow.workflows.glue); --root is only the project it works on. Each
    # task's stages run their workspace's copy of the project's src/ (runtime.own_code); pool workers its commit.
    from distilflow.tasks import TASKS

    names = [name.strip() for name in (tasks or "").split(",") if name.strip()]
    unknown = [name for name in names if name not in TASKS]
    if unknown:
        _fail(f"--tasks: unknown GLUE tasks {unknown}; known: {', '.join(TASKS)}", 2)
    if glue_dir is not None and not glue_dir.is_dir():
        _fail(f"--glue-dir {glue_dir}: not a folder", 2)
    project = Paths.at(root)
    lacking = [file.name for file in (project.root / "dvc.yaml", project.params_file) if not file.is_file()]
    if lacking:
        _fail(f"--root {project.root}: not a distilflow project (no {', '.join(lacking)}); point --root at one", 2)
    from distilflow.workflows import glue as glue_flow

    argv = ["--root", str(project.root)]
    argv += ["--glue-dir", str(glue_dir.resolve())] if glue_dir is not None else []
    argv += ["--tasks", ",".join(names)] if names else []
    argv += ["--profile", profile] if profile else []
    argv += ["--pool", pool] if pool else []
    raise typer.Exit(glue_flow.main(argv))


def main() -> None:
    app(prog_name="distilflow")


if __name__ == "__main__":
    main()
