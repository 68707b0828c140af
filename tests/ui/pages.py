"""What a person sees: the MLflow and Prefect UIs after a pipeline run, rendered by a real headless Chromium.

One module fixture does what a new user does after ``make pipeline`` and ``make ui``: a fresh workspace, a Prefect
server with its UI, the flow run against it (every stage really runs), and the MLflow UI on the workspace's store.
The tests read the pages' DOM after their JavaScript ran. With ``DISTILFLOW_SCREENSHOTS=docs/img`` the same pages
are also kept as the screenshots the README and guides show.

Marked ``ui`` and left out of ``make test`` (the run and two servers take minutes): ``make test-ui`` and CI run it.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

import pytest

from distilflow.servers import free_port, start_server, stop_server
from tests.conftest import REPO_ROOT, make_workspace, run
from tests.conftest import test_env as workspace_env
from tests.integration.test_flow import Server, artifacts, log_text, run_flow
from tests.ui.browser import chromium, rendered, screenshot

pytestmark = [
    pytest.mark.ui,
    pytest.mark.skipif(chromium() is None, reason="needs Debian's chromium (apt-get install -y chromium)"),
]

STUDENT = "distilflow-sst2-student"
SCREENSHOTS_ENV = "DISTILFLOW_SCREENSHOTS"


@dataclass
class UiRun:
    root: Path
    prefect: str  # the Prefect UI's base URL
    mlflow: str  # the MLflow UI's base URL
    flow_run: UUID
    links: dict[str, str]  # the promotion artifact's links, by their text
    stages: list[str]
    log: str


def prefect_ui_command(port: int) -> list[str]:
    return [str(Path(sys.executable).parent / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)]


def mlflow_ui_command(port: int, root: Path) -> list[str]:
    store = f"sqlite:///{root / 'mlruns.db'}"
    mlflow = str(Path(sys.executable).parent / "mlflow")
    return [
        mlflow,
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--backend-store-uri",
        store,
        "--workers",
        "1",
    ]


@pytest.fixture(scope="module")
def ui_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UiRun]:
    base = tmp_path_factory.mktemp("ui")
    root = make_workspace(base / "ws")
    run(["dvc", "remote", "modify", "--local", "local", "url", str(base / "empty-remote")], root)
    prefect_port, mlflow_port = free_port(), free_port()
    prefect, mlflow = f"http://127.0.0.1:{prefect_port}", f"http://127.0.0.1:{mlflow_port}"
    env = workspace_env()
    env.update(PREFECT_HOME=str(base / "prefect-home"), PREFECT_API_URL=f"{prefect}/api", DISTILFLOW_MLFLOW_UI=mlflow)
    env["PREFECT_SERVER_UI_ENABLED"] = "true"
    # Both servers start side by side (each takes tens of seconds on a busy machine); both stop, also on failure.
    with ThreadPoolExecutor(2) as pool:
        started = [
            pool.submit(
                start_server,
                prefect_ui_command(prefect_port),
                env,
                f"{prefect}/api/health",
                300,
                base / "prefect.log",
                1,
            ),
            pool.submit(
                start_server, mlflow_ui_command(mlflow_port, root), env, f"{mlflow}/health", 300, base / "mlflow.log", 1
            ),
        ]
    servers = [future.result() for future in started if future.exception() is None]
    try:
        for future in started:
            future.result()  # a server that failed to start fails the fixture here, after the others are known
        code, output, flow_run = run_flow(root, [], env)
        assert code == 0 and flow_run is not None, output[-5000:]
        server = Server(url=f"{prefect}/api", env=env)
        stages = sorted(json.loads(output[output.index("{") : output.rindex("}") + 1]))
        promotion = artifacts(server, flow_run)["promotion-decision"].data
        links = dict(re.findall(r"\[([^\]]+)\]\((http[^)]+)\)", promotion))
        yield UiRun(root, prefect, mlflow, flow_run, links, stages, log_text(server, flow_run))
    finally:
        for process in servers:
            stop_server(process)


def keep_screenshot(url: str, name: str) -> None:
    """With DISTILFLOW_SCREENSHOTS=FOLDER, the page is kept as FOLDER/NAME.png (the docs' pictures)."""
    folder = os.environ.get(SCREENSHOTS_ENV)
    if folder:
        target = Path(folder) if Path(folder).is_absolute() else REPO_ROOT / folder
        screenshot(url, target / f"{name}.png")


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
