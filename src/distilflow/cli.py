"""The ``distilflow`` command: one entry point for DVC stages, ad-hoc validation and registry operations."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from distilflow.config import ParamsError, load_params
from distilflow.paths import Paths

app = typer.Typer(
    help="distilflow: validate a GLUE dataset, fine-tune a BERT teacher, distill BERT-tiny, register and serve it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Stage name → module in distilflow.stages; the order is dvc.yaml's, which is the source of truth for the graph.
STAGE_MODULES = {
    "ingest": "ingest",
    "validate": "validate",
    "tokenize": "tokenization",
    "finetune": "finetune",
    "evaluate": "evaluation",
    "distill": "distill",
    "register": "register",
}

RootOption = Annotated[Path, typer.Option("--root", help="project folder holding params.yaml and the outputs")]


def _fail(message: str, code: int = 1) -> None:
    typer.secho(message, fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


@app.command()
def stage(
    name: Annotated[str, typer.Argument(help=f"one of: {', '.join(STAGE_MODULES)}")],
    model: Annotated[str, typer.Option(help="evaluate only: which model to score (teacher|student)")] = "teacher",
    root: RootOption = Path("."),
    params_file: Annotated[Path | None, typer.Option("--params", help="default: ROOT/params.yaml")] = None,
) -> None:
    """Run one pipeline stage with the settings in params.yaml (this is what dvc.yaml calls)."""
    from distilflow.modeling import hub_offline_by_default

    if name not in STAGE_MODULES:
        _fail(f"unknown stage {name!r}; stages: {', '.join(STAGE_MODULES)}", 2)
    paths = Paths.at(root)
    try:
        params = load_params(params_file or paths.params_file)
    except ParamsError as error:
        _fail(str(error), 2)
    hub_offline_by_default()
    module = importlib.import_module(f"distilflow.stages.{STAGE_MODULES[name]}")
    kwargs: dict[str, Any] = {"which": model} if name == "evaluate" else {}
    try:
        module.run(params, paths, **kwargs)
    except Exception as error:
        if _is_user_error(error):
            _fail(f"{name} failed: {error}")
        raise


def _is_user_error(error: Exception) -> bool:
    """Problems with the user's data or settings get a clean message; bugs keep their traceback."""
    names = {cls.__name__ for cls in type(error).__mro__}
    return bool(names & {"DataValidationError", "IngestError", "ParamsError"})


@app.command()
def validate(
    task: Annotated[str, typer.Option(help="GLUE task name, e.g. sst2, cola, mrpc, stsb")],
    data_dir: Annotated[Path, typer.Option(help="folder with the task's GLUE files (train.tsv, dev.tsv, ...)")],
    report_dir: Annotated[Path | None, typer.Option(help="write the HTML report and JSON summary here")] = None,
    params_file: Annotated[Path | None, typer.Option("--params", help="validate.* settings from this file")] = None,
    limit: Annotated[int, typer.Option(help="failing rows listed per rule")] = 20,
) -> None:
    """Check any GLUE folder with the pipeline's rules, without running the pipeline."""
    from distilflow.config import ValidateParams
    from distilflow.tasks import get_task
    from distilflow.validation import validate_folder

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


def _registry(root: Path, role: str) -> tuple[Any, str]:
    import mlflow

    from distilflow.registry import model_name
    from distilflow.tracking import configure_mlflow

    paths = Paths.at(root)
    params = load_params(paths.params_file)
    configure_mlflow(params, paths)
    return mlflow.MlflowClient(), model_name(params.task, role)


@app.command()
def promote(
    version: Annotated[str, typer.Argument(help="model version to make champion")],
    role: Annotated[str, typer.Option(help="student or teacher")] = "student",
    root: RootOption = Path("."),
) -> None:
    """Make VERSION the champion by hand (the gate is for automatic promotion; people may overrule it)."""
    from distilflow.registry import promote as promote_version

    client, name = _registry(root, role)
    previous = promote_version(client, name, version)
    typer.echo(f"{name}@champion → v{version} (was {f'v{previous}' if previous else 'none'})")


@app.command()
def rollback(
    role: Annotated[str, typer.Option(help="student or teacher")] = "student",
    root: RootOption = Path("."),
) -> None:
    """Point champion back at the version it replaced."""
    from distilflow.registry import rollback as rollback_version

    client, name = _registry(root, role)
    try:
        version = rollback_version(client, name)
    except ValueError as error:
        _fail(str(error))
    typer.echo(f"{name}@champion → v{version}")


def main() -> None:
    app(prog_name="distilflow")


if __name__ == "__main__":
    sys.exit(main())
