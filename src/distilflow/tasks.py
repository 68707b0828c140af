"""The GLUE task registry: one record per task says how its files look and how it is scored.

Every stage reads task facts from here, so a new task is one entry, not edits across the code base.
Column names in ``file_columns`` are exactly those of the GLUE download script's TSVs; ``fields``
are the normalised names (the Hugging Face ``glue`` dataset's) used everywhere after validation.
"""

from __future__ import annotations

from dataclasses import dataclass

LABEL = "label"
LINE = "line"  # 1-based line number in the source file, kept so errors point at the file


@dataclass(frozen=True)
class GlueTask:
    name: str
    dir_name: str
    fields: tuple[str, ...]
    """Normalised text field names: one for single-sentence tasks, two for pair tasks."""
    file_columns: tuple[str, ...]
    """Source column of each field, in the same order as ``fields``."""
    label_column: str
    labels: tuple[str, ...] | None
    """Label values as written in the files, in class-id order; None for regression."""
    metrics: tuple[str, ...]
    primary_metric: str
    header: bool = True
    headerless_columns: tuple[str, ...] = ()
    """Column names for files without a header row (CoLA)."""
    id_column: str | None = None
    dev_splits: tuple[str, ...] = ("dev",)
    score_range: tuple[float, float] = (0.0, 5.0)

    @property
    def is_regression(self) -> bool:
        return self.labels is None

    @property
    def is_pair(self) -> bool:
        return len(self.fields) == 2

    @property
    def num_labels(self) -> int:
        return 1 if self.labels is None else len(self.labels)

    @property
    def kind(self) -> str:
        """The validation suite family: single sentence, sentence pair or regression."""
        if self.is_regression:
            return "regression"
        return "pair" if self.is_pair else "single"

    @property
    def splits(self) -> tuple[str, ...]:
        return ("train", *self.dev_splits)

    def label_id(self, value: str) -> int:
        assert self.labels is not None
        return self.labels.index(value)


_BINARY = ("0", "1")
_NLI2 = ("entailment", "not_entailment")

TASKS: dict[str, GlueTask] = {
    task.name: task
    for task in (
        GlueTask(
            name="sst2",
            dir_name="SST-2",
            fields=("sentence",),
            file_columns=("sentence",),
            label_column="label",
            labels=_BINARY,
            metrics=("accuracy",),
            primary_metric="accuracy",
        ),
        GlueTask(
            name="cola",
            dir_name="CoLA",
            fields=("sentence",),
            file_columns=("sentence",),
            label_column="label",
            labels=_BINARY,
            metrics=("matthews_correlation",),
            primary_metric="matthews_correlation",
            header=False,
            headerless_columns=("source", "label", "original_mark", "sentence"),
        ),
        GlueTask(
            name="mrpc",
            dir_name="MRPC",
            fields=("sentence1", "sentence2"),
            file_columns=("#1 String", "#2 String"),
            label_column="Quality",
            labels=_BINARY,
            metrics=("accuracy", "f1"),
            primary_metric="f1",
        ),
        GlueTask(
            name="stsb",
            dir_name="STS-B",
            fields=("sentence1", "sentence2"),
            file_columns=("sentence1", "sentence2"),
            label_column="score",
            labels=None,
            metrics=("pearson", "spearmanr"),
            primary_metric="pearson",
            id_column="index",
        ),
        GlueTask(
            name="qqp",
            dir_name="QQP",
            fields=("question1", "question2"),
            file_columns=("question1", "question2"),
            label_column="is_duplicate",
            labels=_BINARY,
            metrics=("accuracy", "f1"),
            primary_metric="f1",
            id_column="id",
        ),
        GlueTask(
            name="mnli",
            dir_name="MNLI",
            fields=("premise", "hypothesis"),
            file_columns=("sentence1", "sentence2"),
            label_column="gold_label",
            labels=("entailment", "neutral", "contradiction"),
            metrics=("accuracy",),
            primary_metric="accuracy",
            id_column="index",
            dev_splits=("dev_matched", "dev_mismatched"),
        ),
        GlueTask(
            name="qnli",
            dir_name="QNLI",
            fields=("question", "sentence"),
            file_columns=("question", "sentence"),
            label_column="label",
            labels=_NLI2,
            metrics=("accuracy",),
            primary_metric="accuracy",
            id_column="index",
        ),
        GlueTask(
            name="rte",
            dir_name="RTE",
            fields=("sentence1", "sentence2"),
            file_columns=("sentence1", "sentence2"),
            label_column="label",
            labels=_NLI2,
            metrics=("accuracy",),
            primary_metric="accuracy",
            id_column="index",
        ),
        GlueTask(
            name="wnli",
            dir_name="WNLI",
            fields=("sentence1", "sentence2"),
            file_columns=("sentence1", "sentence2"),
            label_column="label",
            labels=_BINARY,
            metrics=("accuracy",),
            primary_metric="accuracy",
            id_column="index",
        ),
    )
}


def get_task(name: str) -> GlueTask:
    try:
        return TASKS[name]
    except KeyError:
        known = ", ".join(sorted(TASKS))
        raise ValueError(f"unknown GLUE task {name!r}; known tasks: {known}") from None
