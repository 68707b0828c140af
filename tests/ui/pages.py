"""What a person sees: the MLflow and Prefect UIs after a pipeline run, rendered by a real headless Chromium.

The checks read the pages' DOM after their JavaScript ran. They run on the flow run that
``tests/integration/test_flow.py``'s ``deployed`` fixture already makes (a fresh workspace, every stage, a Prefect
server with its UI), with the MLflow UI started on that workspace's store: that module imports these tests, so the
suite pays for one pipeline run, not two. With ``DISTILFLOW_SCREENSHOTS=docs/img`` the same pages are also kept as the
screenshots the README and guides show. Without Debian's chromium they skip, saying so (CI installs it).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

import pytest

from tests.conftest import REPO_ROOT
from tests.ui.browser import chromium, rendered, screenshot

needs_chromium = pytest.mark.skipif(chromium() is None, reason="needs Debian's chromium (apt-get install -y chromium)")

STUDENT = "distilflow-sst2-student"
SCREENSHOTS_ENV = "DISTILFLOW_SCREENSHOTS"


@dataclass
class UiRun:
    """One flow run as the UIs show it."""

    root: Path
    prefect: str  # the Prefect UI's base URL
    mlflow: str  # the MLflow UI's base URL
    flow_run: UUID
    links: dict[str, str]  # the promotion artifact's links, by their text
    stages: list[str]
    log: str


def keep_screenshot(url: str, name: str) -> None:
    """With DISTILFLOW_SCREENSHOTS=FOLDER, the page is kept as FOLDER/NAME.png (the docs' pictures)."""
    folder = os.environ.get(SCREENSHOTS_ENV)
    if folder:
        target = Path(folder) if Path(folder).is_absolute() else REPO_ROOT / folder
        screenshot(url, target / f"{name}.png")


@needs_chromium
def test_the_experiment_opens_on_its_training_runs(ui_run: UiRun) -> None:
    """The promotion artifact's experiment link opens MLflow's training-runs view, not the GenAI overview.

    MLflow 3.17's UI picks the view from the URL's workflowType (else a per-browser toggle, GenAI by default); the
    link carries the one the experiment's mlflow.experimentKind tag maps to. Without the tag, it opens on Traces.
    """
    url = ui_run.links["training runs"]
    pipeline_id = str(ui_run.flow_run)
    dom = rendered(url, f"register-{pipeline_id}", f"distill-{pipeline_id}")
    assert f"register-{pipeline_id}" in dom and f"distill-{pipeline_id}" in dom, "the training runs are not listed"
    # MLflow's GenAI view lists the same runs under "Training runs", beside "Evaluation runs" and the overview.
    genai = [text for text in ("Training runs", "Evaluation runs", "Token usage", "Token Usage") if text in dom]
    assert not genai, f"the experiment opened in MLflow's GenAI view ({genai}), not on its training runs"
    keep_screenshot(url, "mlflow-training-runs")


@needs_chromium
def test_the_students_page_shows_its_card_and_the_champion_alias(ui_run: UiRun) -> None:
    url = ui_run.links[f"{STUDENT} v1"]
    dom = rendered(url, "Distilled student, GLUE sst2", "champion", "Lineage")
    assert "Distilled student, GLUE sst2" in dom, "the version's description (model card) is not shown"
    assert "is the newest student version the gate judged" in dom, "the card does not say what the aliases mean"
    assert re.search(r">@?\s*champion\s*<", dom), "no champion alias on the page"
    for stage in ("augment", "evaluate@teacher", "pretrain", "distill", "register"):
        assert f"{stage}:" in dom, f"the card's lineage lacks {stage}"
    keep_screenshot(url, "mlflow-model-version")
    keep_screenshot(f"{ui_run.mlflow}/#/models/{STUDENT}?workflowType=machine_learning", "mlflow-model")


@needs_chromium
def test_the_flow_run_shows_one_task_per_stage(ui_run: UiRun) -> None:
    """Prefect's flow run page lists a task run per dvc.yaml stage, each named, none with a random suffix.

    The default (v1) UI draws the run's graph on a canvas and opens its task list only on a click; Prefect's v2 UI,
    served beside it at /v2, lists the task runs in the page itself.
    """
    url = f"{ui_run.prefect}/v2/runs/flow-run/{ui_run.flow_run}?tab=TaskRuns"
    stages = [stage for stage in ui_run.stages if stage != "registry"]
    dom = rendered(url, *(f">{stage}<" for stage in stages))
    missing = [stage for stage in stages if f">{stage}<" not in dom]
    assert not missing, f"no task run for {missing} on the flow run page"
    for named in ("plan (dvc status)", "registry follows DVC", "publish evaluation and promotion"):
        assert f">{named}<" in dom, f"no task run named {named!r}"
    assert not re.search(r">[a-z (),@]+-[0-9a-f]{3}<", dom), "a task run name carries Prefect's random suffix"
    assert "first run: nothing to pull yet" in ui_run.log
    keep_screenshot(f"{ui_run.prefect}/runs/flow-run/{ui_run.flow_run}", "prefect-flow-run")
