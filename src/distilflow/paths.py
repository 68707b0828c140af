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

    @property
    def params_file(self) -> Path:
        return self.root / "params.yaml"

    @property
    def demo_dir(self) -> Path:
        return self.root / "data" / "demo"

    @property
    def raw_dir(self) -> Path:
        return self.root / "data" / "raw"

    @property
    def validated_dir(self) -> Path:
        return self.root / "data" / "validated"

    @property
    def tokenized_dir(self) -> Path:
        return self.root / "data" / "tokenized"

    @property
    def teacher_dir(self) -> Path:
        return self.root / "models" / "teacher"

    @property
    def teacher_checkpoints_dir(self) -> Path:
        return self.root / "checkpoints" / "teacher"

    @property
    def student_dir(self) -> Path:
        return self.root / "models" / "student"

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
