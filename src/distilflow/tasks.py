"""The GLUE task registry: one record per task says how its files look and how it is scored.

Every stage reads task facts from here, so a new task is one entry, not edits across the code base.
Column names in ``file_columns`` are exactly those of the GLUE download script's TSVs; ``fields``
are the normalised names (the Hugging Face ``glue`` dataset's) used everywhere after validation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

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
    layout: tuple[str, ...] = ()
    """Every column of the training file, in file order (the reader looks columns up by name; writing a file back
    needs them all). For files without a header row (CoLA), the names the reader gives the columns."""
    dev_layout: tuple[str, ...] = ()
    """The dev files' columns where they differ from train's (MNLI's dev files carry five annotator labels)."""
    header: bool = True
    bom_header: bool = False
    """The header starts with a UTF-8 byte order mark (MRPC: the GLUE script copies Microsoft's original file)."""
    id_column: str | None = None
    dev_splits: tuple[str, ...] = ("dev",)
    score_range: tuple[float, float] = (0.0, 5.0)
    """Regression tasks: the gold score's range, to which predictions are clipped."""

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

    @property
    def folder_names(self) -> tuple[str, str]:
        """The folder names a task's files may sit in: GLUE's download script's (``SST-2``) and this project's
        embedded demos' (``data/demo/sst2``)."""
        return (self.dir_name, self.name)

    def label_id(self, value: str) -> int:
        assert self.labels is not None
        return self.labels.index(value)

    def columns(self, split: str = "train") -> tuple[str, ...]:
        """Every column of this task's file for ``split``, in file order."""
        if split != "train" and self.dev_layout:
            return self.dev_layout
        return self.layout or (*self.file_columns, self.label_column)


_BINARY = ("0", "1")
_NLI2 = ("entailment", "not_entailment")
_MNLI_TRAIN = (
    "index",
    "promptID",
    "pairID",
    "genre",
    "sentence1_binary_parse",
    "sentence2_binary_parse",
    "sentence1_parse",
    "sentence2_parse",
    "sentence1",
    "sentence2",
)

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
            layout=("source", "label", "original_mark", "sentence"),
            header=False,
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
            layout=("Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"),
            bom_header=True,
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
            layout=(
                "index",
                "genre",
                "filename",
                "year",
                "old_index",
                "source1",
                "source2",
                "sentence1",
                "sentence2",
                "score",
            ),
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
            layout=("id", "qid1", "qid2", "question1", "question2", "is_duplicate"),
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
            layout=(*_MNLI_TRAIN, "label1", "gold_label"),
            dev_layout=(*_MNLI_TRAIN, "label1", "label2", "label3", "label4", "label5", "gold_label"),
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
            layout=("index", "question", "sentence", "label"),
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
            layout=("index", "sentence1", "sentence2", "label"),
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
            layout=("index", "sentence1", "sentence2", "label"),
            id_column="index",
        ),
    )
}


def task_folder(root: Path, task: GlueTask) -> Path | None:
    """``task``'s folder under a GLUE root (``ROOT/SST-2`` or ``ROOT/sst2``); None when neither holds train.tsv."""
    for name in task.folder_names:
        folder = root / name
        if (folder / "train.tsv").is_file():
            return folder
    return None


def get_task(name: str) -> GlueTask:
    try:
        return TASKS[name]
    except KeyError:
        known = ", ".join(sorted(TASKS))
        raise ValueError(f"unknown GLUE task {name!r}; known tasks: {known}") from None
