"""The evaluation outputs people compare experiments with (`dvc metrics diff`, `dvc plots diff`) and, where the
real GLUE data is present, the evaluate stage's numbers checked against an independent computation from its saved
predictions. The embedded pair and regression demos' end-to-end checks (evaluation outputs, the served pair model)
run on the GLUE suite's per-task workspaces: tests/integration/test_glue_suite.py.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, matthews_corrcoef

from tests.conftest import run, write_params

# A whole `dvc repro` takes a few minutes on an idle 2-core machine; this leaves room for a busy one.
REPRO_TIMEOUT = 3600


def read_json(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def commit_all(root: Path, message: str) -> None:
    run(["git", "add", "-A"], root)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", message], root)


@pytest.mark.slow
def test_metrics_diff_and_plots_diff_show_an_experiments_change(pipeline_workspace: Path, tmp_path: Path) -> None:
    root = tmp_path / "copy"
    shutil.copytree(pipeline_workspace, root, symlinks=True)
    commit_all(root, "baseline experiment")
    write_params(root, {"distill": {"temperature": 3.0}})
    run(["dvc", "repro"], root, timeout=REPRO_TIMEOUT)

    diff = json.loads(run(["dvc", "metrics", "diff", "--json"], root).stdout)
    student = diff["metrics/eval_student.json"]
    assert "accuracy" in student or "ece" in student, sorted(student)  # the retrained student scores differently
    assert any(key.startswith("student.") for key in diff["metrics/eval.json"])
    assert "metrics/eval_teacher.json" not in diff or set(diff["metrics/eval_teacher.json"]) <= {
        "latency_p50_ms",
        "latency_p95_ms",
        "throughput_b8_per_s",
    }  # the teacher was not re-scored

    plots = json.loads(run(["dvc", "plots", "diff", "HEAD", "--json"], root).stdout)
    assert not plots.get("errors"), plots.get("errors")
    confusion = plots["data"]["predictions/student_dev.csv"][0]
    assert set(confusion["revisions"]) == {"HEAD", "workspace"}
    assert {"actual", "predicted", "rev"} <= set(confusion["content"]["data"]["values"][0])
    images = plots["data"]["plots/eval_student/reliability.png"]
    assert {rev for image in images for rev in image["revisions"]} == {"HEAD", "workspace"}


def read_glue_dev(folder: Path, task: str) -> pd.DataFrame:
    """The dev file read with the csv module, independently of the pipeline's reader: line, sentence, label."""
    rows = []
    with (folder / "dev.tsv").open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        for line, fields in enumerate(reader, start=1):
            if task == "sst2" and line == 1:
                continue  # header
            # SST-2: sentence, label; CoLA (no header): source, label, original mark, sentence.
            sentence, label = (fields[0], fields[1]) if task == "sst2" else (fields[3], fields[1])
            rows.append({"line": line, "text": sentence, "gold": int(label)})
    return pd.DataFrame(rows)


def independent_probabilities(model_dir: Path, texts: list[str], max_length: int) -> np.ndarray:
    """Class probabilities from the saved model through plain transformers: no distilflow code on this path."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForSequenceClassification.from_pretrained(str(model_dir)).eval()
    outputs = []
    with torch.inference_mode():
        for start in range(0, len(texts), 64):
            encoded = tokenizer(
                texts[start : start + 64], truncation=True, max_length=max_length, padding=True, return_tensors="pt"
            )
            outputs.append(torch.softmax(model(**encoded).logits.float(), dim=-1).numpy())
    return np.concatenate(outputs)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("task", "folder", "metric"), [("sst2", "SST-2", "accuracy"), ("cola", "CoLA", "matthews_correlation")]
)
def test_evaluate_matches_an_independent_computation_on_real_glue(
    task: str, folder: str, metric: str, glue_dir: Path, workspace_factory: Any
) -> None:
    data = glue_dir / folder
    root = workspace_factory(
        task,
        {
            "task": task,
            "data": {"source": "local", "path": str(data), "max_train_rows": 500, "max_dev_rows": None},
            "finetune": {"max_steps": 40, "eval_every": 20, "checkpoint_every": 20, "learning_rate": 1.0e-4},
        },
    )
    run(["dvc", "repro", "evaluate@teacher"], root, timeout=REPRO_TIMEOUT)

    metrics = read_json(root / "metrics" / "eval_teacher.json")
    predictions = pd.read_csv(root / "predictions" / "teacher_dev.csv")
    gold = read_glue_dev(data, task)
    assert len(predictions) == len(gold) == metrics["dev_examples"]  # the full dev set, every row scored
    merged = predictions.merge(gold, on="line", validate="one_to_one")
    assert (merged["label"] == merged["gold"]).all()
    assert (merged["sentence"] == merged["text"]).all()

    # The metric, recomputed from the saved predictions with scikit-learn.
    if metric == "accuracy":
        expected = accuracy_score(merged["gold"], merged["prediction"])
    else:
        expected = matthews_corrcoef(merged["gold"], merged["prediction"])
    assert metrics[metric] == pytest.approx(expected, abs=1e-12)

    # The predictions themselves, recomputed from the raw TSV text and the saved model without the pipeline's
    # tokenized data, batching or padding; this holds even where a briefly trained model favours one class.
    probabilities = independent_probabilities(root / "models" / "teacher", merged["text"].tolist(), 128)
    np.testing.assert_allclose(merged[["p_0", "p_1"]].to_numpy(), probabilities, atol=1e-4)
    clear = np.abs(probabilities[:, 1] - probabilities[:, 0]) > 1e-3  # argmax of a near-tie may differ by rounding
    assert (merged["prediction"].to_numpy()[clear] == probabilities.argmax(axis=1)[clear]).all()
    assert clear.mean() > 0.95
