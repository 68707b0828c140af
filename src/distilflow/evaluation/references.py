"""Published GLUE results the comparison report puts next to this run's teacher and student.

Numbers are copied from the papers' tables, in the tables' own units (percent, or correlation x 100), and keyed
by the metric names ``distilflow.metrics`` returns, so a row lines up with a column of ``metrics/eval.json``.
Only numbers whose metric the source states are included: the DistilBERT paper gives one unnamed number for
MRPC, QQP, STS-B and MNLI, so those tasks have no DistilBERT or BERT-base dev row here.

Test-set numbers come from the GLUE server and dev-set numbers from the authors' own runs; this pipeline scores
the dev set, so only the dev rows are like for like. The report says which split each row is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Split = Literal["dev", "test"]

DEVLIN_2019 = "Devlin et al. 2019, BERT, Table 1 (GLUE test server)"
TURC_2019 = "Turc et al. 2019, Well-Read Students Learn Better (google-research/bert README, GLUE test server)"
SANH_2019 = "Sanh et al. 2019, DistilBERT, Table 1 (dev, median of 5 runs)"
WANG_2020 = "Wang et al. 2020, MiniLM (microsoft/unilm minilm/README.md, dev; MRPC and QQP unnamed metric, left out)"


@dataclass(frozen=True)
class Reference:
    model: str
    parameters_millions: float
    split: Split
    source: str
    scores: dict[str, dict[str, float]] = field(default_factory=dict)
    """task -> metric key -> published value (x 100)."""


def _turc(
    accuracy_like: dict[str, float],
    mrpc: tuple[float, float],
    stsb: tuple[float, float],
    qqp: tuple[float, float],
    mnli: tuple[float, float],
) -> dict[str, dict[str, float]]:
    """The README table writes MRPC and QQP as F1/accuracy, STS-B as Pearson/Spearman, MNLI as -m and -mm."""
    return {
        "cola": {"matthews_correlation": accuracy_like["cola"]},
        "sst2": {"accuracy": accuracy_like["sst2"]},
        "mrpc": {"f1": mrpc[0], "accuracy": mrpc[1]},
        "stsb": {"pearson": stsb[0], "spearmanr": stsb[1]},
        "qqp": {"f1": qqp[0], "accuracy": qqp[1]},
        "mnli": {"dev_matched_accuracy": mnli[0], "dev_mismatched_accuracy": mnli[1]},
        "qnli": {"accuracy": accuracy_like["qnli"]},
        "rte": {"accuracy": accuracy_like["rte"]},
        "wnli": {"accuracy": accuracy_like["wnli"]},
    }


REFERENCES: tuple[Reference, ...] = (
    Reference(
        "BERT-large",
        340.0,
        "test",
        DEVLIN_2019,
        {
            # Devlin et al. report F1 for MRPC and QQP and Spearman for STS-B (Table 1 caption).
            "mnli": {"dev_matched_accuracy": 86.7, "dev_mismatched_accuracy": 85.9},
            "qqp": {"f1": 72.1},
            "qnli": {"accuracy": 92.7},
            "sst2": {"accuracy": 94.9},
            "cola": {"matthews_correlation": 60.5},
            "stsb": {"spearmanr": 86.5},
            "mrpc": {"f1": 89.3},
            "rte": {"accuracy": 70.1},
        },
    ),
    Reference(
        "BERT-base",
        110.0,
        "test",
        DEVLIN_2019,
        {
            "mnli": {"dev_matched_accuracy": 84.6, "dev_mismatched_accuracy": 83.4},
            "qqp": {"f1": 71.2},
            "qnli": {"accuracy": 90.5},
            "sst2": {"accuracy": 93.5},
            "cola": {"matthews_correlation": 52.1},
            "stsb": {"spearmanr": 85.8},
            "mrpc": {"f1": 88.9},
            "rte": {"accuracy": 66.4},
        },
    ),
    Reference(
        "BERT-base",
        110.0,
        "dev",
        SANH_2019,
        {
            "cola": {"matthews_correlation": 56.3},
            "qnli": {"accuracy": 91.8},
            "rte": {"accuracy": 69.3},
            "sst2": {"accuracy": 92.7},
            "wnli": {"accuracy": 53.5},
        },
    ),
    Reference(
        "DistilBERT",
        66.0,
        "dev",
        SANH_2019,
        {
            "cola": {"matthews_correlation": 51.3},
            "qnli": {"accuracy": 89.2},
            "rte": {"accuracy": 59.9},
            "sst2": {"accuracy": 91.3},
            "wnli": {"accuracy": 56.3},
        },
    ),
    Reference(
        # MiniLMv1-L6-H384, the pre-trained model the packaged teacher (all-MiniLM-L6-v2) was trained from. The
        # README gives MNLI-m only, and one number for MRPC and QQP without naming the metric: those are left out.
        "MiniLM-L6 (L6/H384)",
        22.0,
        "dev",
        WANG_2020,
        {
            "mnli": {"dev_matched_accuracy": 83.3},
            "sst2": {"accuracy": 91.5},
            "qnli": {"accuracy": 90.5},
            "cola": {"matthews_correlation": 47.5},
            "rte": {"accuracy": 68.8},
        },
    ),
    Reference(
        "BERT-Medium (L8/H512)",
        41.7,
        "test",
        TURC_2019,
        _turc(
            {"cola": 38.0, "sst2": 89.6, "qnli": 87.7, "rte": 62.2, "wnli": 62.3},
            mrpc=(86.6, 81.6),
            stsb=(80.4, 78.4),
            qqp=(69.6, 87.9),
            mnli=(80.0, 79.1),
        ),
    ),
    Reference(
        "BERT-Small (L4/H512)",
        29.1,
        "test",
        TURC_2019,
        _turc(
            {"cola": 27.8, "sst2": 89.7, "qnli": 86.4, "rte": 61.8, "wnli": 62.3},
            mrpc=(83.4, 76.2),
            stsb=(78.8, 77.0),
            qqp=(68.1, 87.0),
            mnli=(77.6, 77.0),
        ),
    ),
    Reference(
        "BERT-Mini (L4/H256)",
        11.3,
        "test",
        TURC_2019,
        _turc(
            {"cola": 0.0, "sst2": 85.9, "qnli": 84.1, "rte": 57.9, "wnli": 62.3},
            mrpc=(81.1, 71.8),
            stsb=(75.4, 73.3),
            qqp=(66.4, 86.2),
            mnli=(74.8, 74.3),
        ),
    ),
    Reference(
        "BERT-Tiny (L2/H128)",
        4.4,
        "test",
        TURC_2019,
        _turc(
            {"cola": 0.0, "sst2": 83.2, "qnli": 81.5, "rte": 57.2, "wnli": 62.3},
            mrpc=(81.1, 71.1),
            stsb=(74.3, 73.6),
            qqp=(62.2, 83.4),
            mnli=(70.2, 70.3),
        ),
    ),
)


def references_for(task: str) -> list[Reference]:
    """The published rows that report at least one metric of ``task``, largest model first."""
    from distilflow.tasks import get_task

    get_task(task)  # an unknown task is an error, not an empty table
    return [reference for reference in REFERENCES if reference.scores.get(task)]
