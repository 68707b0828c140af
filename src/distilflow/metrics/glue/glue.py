"""GLUE benchmark metric, a local stand-in for the Hugging Face hub's ``glue`` metric.

The hub module cannot be fetched where the pipeline runs (no network), so this file mirrors it:
the same config names, input features and result keys, loadable by path with
``evaluate.load(<path to this folder>, config_name=...)``.

Config names and result keys (identical to the hub metric):

- ``sst2``, ``mnli``, ``mnli_matched``, ``mnli_mismatched``, ``qnli``, ``rte``, ``wnli``,
  ``hans``: ``accuracy``
- ``mrpc``, ``qqp``: ``accuracy`` and ``f1`` (binary F1 of the positive class 1)
- ``cola``: ``matthews_correlation``
- ``stsb``: ``pearson`` and ``spearmanr``

Inputs are int64 class ids for every task except ``stsb``, whose inputs are float32 scores.
Every value is returned as a plain Python ``float``.

Where this module departs from the hub metric, it is only to define the cases the hub leaves
to library defaults (warnings, NaN), so that a result is always a finite number that can be
averaged, compared during model selection and written as strict JSON:

- Empty inputs raise ``ValueError``: a metric over zero examples is meaningless, and an empty
  prediction list is almost always an upstream bug that a number would hide.
- Matthews correlation is 0.0 when the predictions or the references hold a single class. The
  coefficient's denominator is zero there; 0.0 is what scikit-learn returns (with a warning),
  and the case is settled here so that it does not depend on the scikit-learn version.
- Pearson and Spearman correlations are 0.0 when either vector is constant (this includes a
  single example). A correlation is undefined without variance, and SciPy returns NaN. 0.0 says
  "no evidence of association", which is the honest reading of, for example, a collapsed
  regressor that predicts the same score for every pair. The same convention is used for
  MCC, and a NaN would otherwise poison GLUE averages and make every ``score > best``
  comparison false.
- F1 is 0.0 when there are no positive predictions and no positive references
  (scikit-learn's ``zero_division=0.0``). Precision and recall are 0/0 there, so no positive
  class was found or predicted, and no credit is given.
- STS-B inputs that are not finite (NaN or infinity, for example from a diverged model) raise
  ``ValueError`` rather than producing a NaN correlation.
"""

from __future__ import annotations

from typing import Any

import datasets
import evaluate
import numpy as np
import numpy.typing as npt
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import f1_score, matthews_corrcoef

_CITATION = """\
@inproceedings{wang2019glue,
  title={{GLUE}: A Multi-Task Benchmark and Analysis Platform for Natural Language Understanding},
  author={Wang, Alex and Singh, Amanpreet and Michael, Julian and Hill, Felix and Levy, Omer and Bowman, Samuel R.},
  note={In the Proceedings of ICLR.},
  year={2019}
}
"""

_DESCRIPTION = """\
GLUE, the General Language Understanding Evaluation benchmark
(https://gluebenchmark.com/) is a collection of resources for training,
evaluating, and analyzing natural language understanding systems.
This is a local mirror of the Hugging Face hub's `glue` metric with the edge cases
(constant inputs, no positive class, empty inputs) defined instead of NaN.
"""

_KWARGS_DESCRIPTION = """
Compute the GLUE evaluation metric associated with each GLUE task.
Args:
    predictions: predicted class ids (int) or, for stsb, predicted similarity scores (float).
    references: gold class ids (int) or, for stsb, gold similarity scores (float).
Returns: depending on the GLUE task, one or several of:
    "accuracy": Accuracy
    "f1": F1 score of the positive class (mrpc, qqp)
    "pearson": Pearson correlation (stsb)
    "spearmanr": Spearman rank correlation (stsb)
    "matthews_correlation": Matthews correlation coefficient (cola)
Examples:

    >>> glue_metric = evaluate.load("path/to/metrics/glue", "mrpc")
    >>> results = glue_metric.compute(predictions=[0, 1], references=[0, 1])
    >>> print(results)
    {'accuracy': 1.0, 'f1': 1.0}
"""

_ACCURACY_CONFIGS = (
    "sst2",
    "mnli",
    "mnli_matched",
    "mnli_mismatched",
    "qnli",
    "rte",
    "wnli",
    "hans",
)
_ACC_F1_CONFIGS = ("mrpc", "qqp")
CONFIG_NAMES = (*_ACCURACY_CONFIGS, *_ACC_F1_CONFIGS, "cola", "stsb")


def _is_constant(values: npt.NDArray[Any]) -> bool:
    return bool(values.min() == values.max())


def simple_accuracy(preds: npt.NDArray[Any], labels: npt.NDArray[Any]) -> float:
    return float((preds == labels).mean())


def acc_and_f1(preds: npt.NDArray[Any], labels: npt.NDArray[Any]) -> dict[str, float]:
    return {
        "accuracy": simple_accuracy(preds, labels),
        "f1": float(f1_score(y_true=labels, y_pred=preds, zero_division=0.0)),
    }


def matthews_correlation(preds: npt.NDArray[Any], labels: npt.NDArray[Any]) -> float:
    # The single-class case is settled here, not left to sklearn, which warns there and could
    # change its answer between versions.
    if _is_constant(preds) or _is_constant(labels):
        return 0.0
    return float(matthews_corrcoef(labels, preds))


def pearson_and_spearman(preds: npt.NDArray[Any], labels: npt.NDArray[Any]) -> dict[str, float]:
    preds = preds.astype(np.float64)
    labels = labels.astype(np.float64)
    if not (np.isfinite(preds).all() and np.isfinite(labels).all()):
        raise ValueError("stsb predictions and references must be finite numbers (got NaN or inf)")
    if _is_constant(preds) or _is_constant(labels):
        return {"pearson": 0.0, "spearmanr": 0.0}
    return {
        "pearson": float(pearsonr(preds, labels).statistic),
        "spearmanr": float(spearmanr(preds, labels).statistic),
    }


def _unknown_config(config_name: str) -> KeyError:
    # KeyError, as the hub metric raises, so callers catching it keep working.
    return KeyError(
        f"Unknown GLUE config {config_name!r}; you should supply a configuration name selected in {list(CONFIG_NAMES)}"
    )


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Glue(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        if self.config_name not in CONFIG_NAMES:
            raise _unknown_config(self.config_name)
        dtype = "float32" if self.config_name == "stsb" else "int64"
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Value(dtype),
                    "references": datasets.Value(dtype),
                }
            ),
            codebase_urls=["https://github.com/huggingface/evaluate/tree/main/metrics/glue"],
            reference_urls=["https://gluebenchmark.com/"],
            format="numpy",
        )

    def _compute(self, predictions: npt.NDArray[Any], references: npt.NDArray[Any]) -> dict[str, float]:
        predictions = np.asarray(predictions)
        references = np.asarray(references)
        if predictions.size == 0 or references.size == 0:
            raise ValueError(
                f"GLUE {self.config_name}: cannot compute a metric over empty inputs "
                f"(got {predictions.size} predictions and {references.size} references)"
            )
        if predictions.shape != references.shape:
            raise ValueError(
                f"GLUE {self.config_name}: predictions {predictions.shape} and "
                f"references {references.shape} differ in shape"
            )
        if self.config_name == "cola":
            return {"matthews_correlation": matthews_correlation(predictions, references)}
        if self.config_name == "stsb":
            return pearson_and_spearman(predictions, references)
        if self.config_name in _ACC_F1_CONFIGS:
            return acc_and_f1(predictions, references)
        if self.config_name in _ACCURACY_CONFIGS:
            return {"accuracy": simple_accuracy(predictions, references)}
        raise _unknown_config(self.config_name)
