"""Every artifact path in one place; dvc.yaml names the same paths (a test checks they agree)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Paths:
    root: Path

    @classmethod
    def at(cls, root: str | Path | None = None) -> Paths:
        return cls(Path(root or ".").resolve())

    def relative(self, path: Path) -> str:
        """``path`` as dvc.yaml and dvc.lock write it: relative to the project, with forward slashes."""
        return path.relative_to(self.root).as_posix()

    @property
    def params_file(self) -> Path:
        return self.root / "params.yaml"

    @property
    def profiles_dir(self) -> Path:
        """Params profiles a flow run can apply (flows/profiles/NAME.yaml)."""
        return self.root / "flows" / "profiles"

    @property
    def glue_recipes_dir(self) -> Path:
        """One params profile per GLUE task (flows/profiles/glue/TASK.yaml), applied by the GLUE suite."""
        return self.profiles_dir / "glue"

    @property
    def glue_report_file(self) -> Path:
        """The GLUE suite's table: one row per model, one column per task."""
        return self.reports_dir / "glue.md"

    @property
    def glue_metrics_file(self) -> Path:
        return self.metrics_dir / "glue.json"

    @property
    def glue_plot_file(self) -> Path:
        return self.plots_dir / "glue.png"

    @property
    def demo_dir(self) -> Path:
        return self.root / "data" / "demo"

    @property
    def raw_dir(self) -> Path:
        return self.root / "data" / "raw"

    @property
    def ingest_report_dir(self) -> Path:
        """Where ingest records which run read the data from where: outside data/raw, whose md5 is the data
        version and so must depend on the data's content alone."""
        return self.reports_dir / "ingest"

    @property
    def validated_dir(self) -> Path:
        return self.root / "data" / "validated"

    @property
    def tokenized_dir(self) -> Path:
        return self.root / "data" / "tokenized"

    @property
    def tokenized_meta_file(self) -> Path:
        """What tokenize hashed and counted; finetune's resume fingerprint reads the content hash from it."""
        return self.tokenized_dir / "meta.json"

    @property
    def transfer_dir(self) -> Path:
        """augment's transfer set: the training split plus rewrites, with the teacher's logits."""
        return self.root / "data" / "transfer"

    @property
    def teacher_dir(self) -> Path:
        return self.root / "models" / "teacher"

    @property
    def teacher_checkpoints_dir(self) -> Path:
        return self.root / "checkpoints" / "teacher"

    @property
    def teacher_search_dir(self) -> Path:
        """The teacher's search: its journal of finished trials and the best whole-run trial's model, kept apart
        from the final run's checkpoints, whose settings only the search decides."""
        return self.root / "checkpoints" / "teacher-search"

    @property
    def student_search_dir(self) -> Path:
        """The student's search: its journal of finished trials, so a rerun after a kill goes on from them."""
        return self.root / "checkpoints" / "student-search"

    @property
    def student_dir(self) -> Path:
        return self.root / "models" / "student"

    @property
    def student_pretrained_dir(self) -> Path:
        return self.root / "models" / "student_pretrained"

    @property
    def validation_report_dir(self) -> Path:
        return self.reports_dir / "validation"

    @property
    def validation_summary_file(self) -> Path:
        return self.validation_report_dir / "summary.json"

    @property
    def metrics_dir(self) -> Path:
        return self.root / "metrics"

    @property
    def plots_dir(self) -> Path:
        return self.root / "plots"

    @property
    def reports_dir(self) -> Path:
        return self.root / "reports"

    @property
    def predictions_dir(self) -> Path:
        return self.root / "predictions"

    @property
    def mlflow_db(self) -> Path:
        return self.root / "mlruns.db"

    @property
    def mlflow_artifacts(self) -> Path:
        return self.root / "mlartifacts"

    def metrics_file(self, stage: str) -> Path:
        return self.metrics_dir / f"{stage}.json"

    @property
    def lineage_dir(self) -> Path:
        """One file per stage run (``KEY.json``), each a DVC out that no later stage depends on: lineage names MLflow
        runs, which differ on every run, so inside a stage's data it would change every later stage's run-cache key."""
        return self.reports_dir / "lineage"

    def lineage_file(self, stage_key: str) -> Path:
        """``stage_key`` as dvc_files.lineage_order writes it: a foreach instance is ``NAME_KEY``."""
        return self.lineage_dir / f"{stage_key}.json"

    def dev_predictions_file(self, which: str) -> Path:
        """The evaluate stage's per-example dev predictions of the teacher or the student."""
        return self.predictions_dir / f"{which}_dev.csv"
