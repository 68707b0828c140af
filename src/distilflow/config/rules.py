"""The catalogue of validation rules: name, default severity and the sentence a person reads in reports.

Kept free of heavy imports because ``distilflow.config.data_params`` checks ``validate.severity`` keys against it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Severity = Literal["error", "warning", "off"]
ERROR: Severity = "error"
WARNING: Severity = "warning"
OFF: Severity = "off"


@dataclass(frozen=True)
class Rule:
    name: str
    severity: Severity
    description: str
    fixed: bool = False
    """Structural rules stay errors: a row that cannot be split into the right columns cannot be checked at all."""
    silenceable: bool = True
    """False for ``row_dropped``: a row may leave the data only with a finding, so the rule cannot be ``off``."""


_RULES = (
    Rule("missing_file", ERROR, "a split file the task needs (train.tsv, dev.tsv, ...) is absent", fixed=True),
    Rule("invalid_utf8", ERROR, "the line is not valid UTF-8", fixed=True),
    Rule("ragged_row", ERROR, "the line has the wrong number of tab-separated fields", fixed=True),
    Rule("missing_column", ERROR, "the header lacks a column the task reads", fixed=True),
    Rule("nul_byte", ERROR, "the line holds a NUL byte (a binary or UTF-16 file, or a corrupt copy)", fixed=True),
    Rule("empty_split", ERROR, "the file has no data rows"),
    Rule("empty_text", ERROR, "a text field is empty"),
    Rule("blank_text", ERROR, "a text field holds only whitespace"),
    Rule("text_too_short", ERROR, "a text is shorter than validate.min_chars characters"),
    Rule("text_too_long", ERROR, "a text is longer than validate.max_chars characters"),
    Rule(
        "long_text",
        WARNING,
        "the example has more than validate.long_text_tokens word/punctuation pieces and will be truncated",
    ),
    Rule("missing_label", ERROR, "the label field is empty"),
    Rule("label_not_in_set", ERROR, "the label is not one of the task's labels"),
    Rule("score_not_numeric", ERROR, "the regression score is not a number"),
    Rule("score_out_of_range", ERROR, "the regression score is outside the task's range"),
    Rule("missing_id", ERROR, "the id field is empty"),
    Rule("duplicate_id", ERROR, "the id appears on more than one row"),
    Rule("duplicate_example", WARNING, "the same text(s) with the same label appear earlier in the file"),
    Rule(
        "conflicting_labels",
        ERROR,
        "the same text(s) carry different labels; tolerated as warnings up to validate.conflict_share_max",
    ),
    Rule(
        "train_dev_leakage",
        ERROR,
        "a dev example's text(s) also appear in train; tolerated as warnings up to validate.leakage_share_max",
    ),
    Rule("class_balance", WARNING, "a class's share of the split is outside validate.class_share_min..max"),
    Rule(
        "row_dropped",
        WARNING,
        "the row is left out of data/validated (its label cannot be read) while its rule is not an error",
        silenceable=False,
    ),
)

RULES: dict[str, Rule] = {rule.name: rule for rule in _RULES}


def check_overrides(overrides: dict[str, str]) -> None:
    """Reject unknown rule names and attempts to relax structural rules, naming the known ones."""
    for name, severity in overrides.items():
        if name not in RULES:
            raise ValueError(f"unknown validation rule {name!r}; known rules: {', '.join(RULES)}")
        if RULES[name].fixed and severity != ERROR:
            raise ValueError(f"rule {name!r} is always an error: rows it finds cannot be read, so cannot be checked")
        if not RULES[name].silenceable and severity == OFF:
            raise ValueError(f"rule {name!r} cannot be off: no row may leave the data without being reported")
