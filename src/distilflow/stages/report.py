"""report: teacher and student side by side, after both are evaluated.

Re-times both models in this one process, taking turns request by request (the per-model timings in
``metrics/eval_<m>.json`` come from two processes run minutes apart, so their ratio would mostly measure the
machine's load at the time). Writes ``metrics/eval.json`` ({teacher, student, ratios}), ``reports/comparison.md``
(the one table, with published reference results) and ``plots/comparison.png``, and logs them to MLflow.
"""

from __future__ import annotations

import json
from typing import Any

from datasets import load_from_disk

from distilflow.config.params import Params
from distilflow.evaluation import plots
from distilflow.evaluation.comparison import (
    build_comparison,
    figure_panels,
    flat_metrics,
    measurement_conditions,
    render_markdown,
)
from distilflow.evaluation.speed import measure_speed_together
from distilflow.models.loading import load_classifier, load_tokenizer
from distilflow.paths import Paths
from distilflow.tasks import get_task
from distilflow.tracking.runs import stage_run, write_json


def run(params: Params, paths: Paths) -> dict[str, Any]:
    task = get_task(params.task)
    settings = params.evaluate
    evaluations = {}
    for role in ("teacher", "student"):
        file = paths.metrics_file(f"eval_{role}")
        if not file.is_file():
            raise FileNotFoundError(f"{file}: missing; run `dvc repro evaluate@{role}` first")
        evaluations[role] = json.loads(file.read_text())
    data = load_from_disk(str(paths.tokenized_dir))
    dev = data[task.dev_splits[0]]
    pad_id = load_tokenizer(str(paths.teacher_dir)).pad_token_id
    models = {"teacher": load_classifier(paths.teacher_dir), "student": load_classifier(paths.student_dir)}
    with stage_run("report", params, paths) as tracked:
        speed = measure_speed_together(models, dev, pad_id, settings)
        comparison = build_comparison(task, evaluations, speed, settings.throughput_batch_size)
        conditions = measurement_conditions(min(settings.latency_examples, len(dev)), settings.throughput_batches)
        markdown = render_markdown(
            task,
            comparison,
            settings.throughput_batch_size,
            conditions,
            int(evaluations["student"].get("dev_examples", len(dev))),
        )
        write_json(paths.metrics_file("eval"), comparison)
        report_file = paths.reports_dir / "comparison.md"
        report_file.parent.mkdir(parents=True, exist_ok=True)
        report_file.write_text(markdown, encoding="utf-8")
        figure = plots.comparison(
            figure_panels(task, comparison, settings.throughput_batch_size),
            paths.plots_dir / "comparison.png",
            f"{task.name}: teacher vs student",
        )
        tracked.log_metrics(flat_metrics(comparison))
        tracked.log_artifact(report_file, "report")
        tracked.log_artifact(figure, "report")
        tracked.log_artifact(paths.metrics_file("eval"), "report")
    print(markdown)
    return {"metrics": comparison, "report": report_file, "plot": figure}
