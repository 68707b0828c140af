"""Great Expectations (GX Core 1.x) suites, one family per task kind: single sentence, sentence pair, regression.

Cross-row facts (duplicates, conflicting labels, train/dev leakage, class shares) are not expressible as
built-in expectations on the raw columns, so the caller adds derived per-row columns (``dup_of``,
``conflict_with``, ``train_line``, ``class_<split>_<k>``) and the suite states the rule on them; GX then
reports the failing rows by their ``split`` and ``line`` columns, which is what lets every finding point at a
line of a file. All splits go through GX as one frame: GX's fixed cost per run (building its metric graph)
dominates on small files, and per-split facts are kept apart by the split-qualified derived columns.

GX is imported lazily: it takes seconds to import, and only the validate stage needs it.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from distilflow.config.data_params import ValidateParams
from distilflow.config.rules import ERROR, OFF, RULES
from distilflow.data.glue_io import NUMBER_REGEX
from distilflow.tasks import LABEL, LINE, GlueTask

ID = "id"
PIECES = "pieces"
SCORE = "score"
DUP_OF = "dup_of"
CONFLICT_WITH = "conflict_with"
TRAIN_LINE = "train_line"
SPLIT = "split"
ID_IN_SPLIT = "id_in_split"
# Whitespace-only, for any Unicode space (\s is Unicode-aware in Python's re, which pandas uses).
BLANK_REGEX = r"^\s+$"


def class_column(split: str, index: int) -> str:
    """1.0 where a row of ``split`` has class ``index``, 0.0 for its other classes, NaN in other splits.

    The column's mean is then the class's share of that split, which GX's mean expectation can bound.
    """
    return f"class_{split}_{index}"


def parse_class_column(column: str, splits: tuple[str, ...]) -> tuple[str, int]:
    head, _, index = column.rpartition("_")
    split = head.removeprefix("class_")
    assert split in splits, column
    return split, int(index)


@dataclass(frozen=True)
class Outcome:
    """One expectation's verdict on the frame of all splits."""

    rule: str
    column: str | None
    expectation: str
    success: bool
    rows: list[tuple[str, int]]
    """(split, line) of every failing row, in frame order."""
    observed: float | None
    severity: str


def _severity(settings: ValidateParams, rule: str) -> str:
    return settings.severity.get(rule, RULES[rule].severity)


def suite_name(task: GlueTask) -> str:
    return f"distilflow-{task.kind}-{task.name}"


def _expectations(
    task: GlueTask, settings: ValidateParams, splits: tuple[str, ...]
) -> list[tuple[str, str, dict[str, Any]]]:
    """(rule, GX expectation class name, kwargs) for the task's kind; rules set to ``off`` are left out."""
    specs: list[tuple[str, str, dict[str, Any]]] = []
    for text in task.fields:
        specs += [
            ("empty_text", "ExpectColumnValuesToNotBeNull", {"column": text}),
            ("blank_text", "ExpectColumnValuesToNotMatchRegex", {"column": text, "regex": BLANK_REGEX}),
            ("text_too_long", "ExpectColumnValueLengthsToBeBetween", {"column": text, "max_value": settings.max_chars}),
        ]
        if settings.min_chars > 1:  # a one-character floor only catches empty texts, which empty_text reports
            length = {"column": text, "min_value": settings.min_chars}
            specs.append(("text_too_short", "ExpectColumnValueLengthsToBeBetween", length))
    specs += [
        ("long_text", "ExpectColumnValuesToBeBetween", {"column": PIECES, "max_value": settings.long_text_tokens}),
        ("missing_label", "ExpectColumnValuesToNotBeNull", {"column": LABEL}),
    ]
    if task.labels is None:
        low, high = task.score_range
        specs += [
            ("score_not_numeric", "ExpectColumnValuesToMatchRegex", {"column": LABEL, "regex": NUMBER_REGEX}),
            (
                "score_out_of_range",
                "ExpectColumnValuesToBeBetween",
                {"column": SCORE, "min_value": low, "max_value": high},
            ),
        ]
    else:
        specs.append(
            ("label_not_in_set", "ExpectColumnValuesToBeInSet", {"column": LABEL, "value_set": list(task.labels)})
        )
        specs.append(("conflicting_labels", "ExpectColumnValuesToBeNull", {"column": CONFLICT_WITH}))
        band = {"min_value": settings.class_share_min, "max_value": settings.class_share_max}
        specs += [
            ("class_balance", "ExpectColumnMeanToBeBetween", {"column": class_column(split, index), **band})
            for split in splits
            for index in range(len(task.labels))
        ]
    if task.id_column:
        specs += [
            ("missing_id", "ExpectColumnValuesToNotBeNull", {"column": ID}),
            ("duplicate_id", "ExpectColumnValuesToBeUnique", {"column": ID_IN_SPLIT}),
        ]
    specs += [
        ("duplicate_example", "ExpectColumnValuesToBeNull", {"column": DUP_OF}),
        ("train_dev_leakage", "ExpectColumnValuesToBeNull", {"column": TRAIN_LINE}),
    ]
    return [spec for spec in specs if _severity(settings, spec[0]) != OFF]


def checked_rules(task: GlueTask, settings: ValidateParams) -> set[str]:
    """Rules that apply to this task with these settings (score rules never apply to a classification task)."""
    # The reader's rules and row_dropped (never off) apply to every task.
    structural = {name for name, rule in RULES.items() if rule.fixed or not rule.silenceable}
    if _severity(settings, "empty_split") != OFF:
        structural.add("empty_split")
    return structural | {rule for rule, _, _ in _expectations(task, settings, task.splits)}


class GxSuite:
    """An ephemeral GX context holding the task's suite, run on the frame of all (readable) splits."""

    def __init__(self, task: GlueTask, settings: ValidateParams, splits: tuple[str, ...]) -> None:
        # GX would otherwise send usage events home; the pipeline must run offline and say nothing outside.
        os.environ["GX_ANALYTICS_ENABLED"] = "false"
        logging.getLogger("great_expectations").setLevel(logging.ERROR)
        import great_expectations as gx
        import great_expectations.expectations as gxe
        from great_expectations.data_context.types.base import ProgressBarsConfig
        from great_expectations.expectations.metadata_types import FailureSeverity

        self.gx_version: str = gx.__version__
        self.task = task
        self.settings = settings
        self.context: Any = gx.get_context(mode="ephemeral")
        # tqdm bars on stderr would bury the findings a person has to read.
        self.context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
        asset = self.context.data_sources.add_pandas(name="glue").add_dataframe_asset(name=task.name)
        batch = asset.add_batch_definition_whole_dataframe("all-splits")
        suite = gx.ExpectationSuite(name=suite_name(task))
        self.specs = _expectations(task, settings, splits)
        for rule, class_name, kwargs in self.specs:
            severity = FailureSeverity.CRITICAL if _severity(settings, rule) == ERROR else FailureSeverity.WARNING
            expectation_class: Callable[..., Any] = getattr(gxe, class_name)
            suite.add_expectation(expectation_class(**kwargs, meta={"rule": rule}, severity=severity))
        self.suite: Any = self.context.suites.add(suite)
        self.definition: Any = self.context.validation_definitions.add(
            gx.ValidationDefinition(name=f"{task.name}-splits", data=batch, suite=self.suite)
        )

    @property
    def size(self) -> int:
        return len(self.specs)

    def run(self, frame: pd.DataFrame) -> list[Outcome]:
        # COMPLETE: every failing row's (split, line), so counts per split are exact; the caller caps the listing.
        result_format = {
            "result_format": "COMPLETE",
            "unexpected_index_column_names": [SPLIT, LINE],
            "return_unexpected_index_query": False,
        }
        result = self.definition.run(batch_parameters={"dataframe": frame}, result_format=result_format)
        outcomes = []
        for item in result.results:
            config = item.expectation_config
            if item.exception_info and item.exception_info.get("raised_exception"):
                # A crashed expectation would otherwise read as "not failed": stop rather than pass bad data.
                message = item.exception_info.get("exception_message")
                raise RuntimeError(f"GX expectation {config.type} on {config.kwargs.get('column')} crashed: {message}")
            details = item.result or {}
            observed = details.get("observed_value")
            rule = str(config.meta["rule"])
            rows = [(str(entry[SPLIT]), int(entry[LINE])) for entry in details.get("unexpected_index_list") or []]
            outcomes.append(
                Outcome(
                    rule=rule,
                    column=config.kwargs.get("column"),
                    expectation=str(config.type),
                    success=bool(item.success),
                    rows=rows,
                    observed=None if observed is None or pd.isna(observed) else float(observed),
                    severity=_severity(self.settings, rule),
                )
            )
        return outcomes


@functools.lru_cache(maxsize=8)
def _cached_suite(task: GlueTask, settings_json: str, splits: tuple[str, ...]) -> GxSuite:
    return GxSuite(task, ValidateParams.model_validate_json(settings_json), splits)


def suite_for(task: GlueTask, settings: ValidateParams, splits: tuple[str, ...]) -> GxSuite:
    """The task's suite, built once per process, settings and splits present: building one costs GX ~0.3 s."""
    return _cached_suite(task, settings.model_dump_json(), splits)
