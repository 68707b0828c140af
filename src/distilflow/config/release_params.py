"""The sections that judge, publish and compare the models: ``evaluate``, ``register`` (with the promotion gate
and serving) and ``glue`` (the suite of every GLUE task)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from distilflow.config.section import Section
from distilflow.paths import Paths
from distilflow.tasks import TASKS


class EvaluateParams(Section):
    latency_examples: int = Field(100, ge=1, description="batch-1 requests timed for p50/p95 latency")
    throughput_batch_size: int = Field(64, ge=1)
    throughput_batches: int = Field(5, ge=1)
    calibration_bins: int = Field(10, ge=1, le=100, description="equal-width confidence bins for ECE and the diagram")
    length_buckets: list[int] = Field(
        default_factory=lambda: [8, 16, 32, 64, 128],
        description="upper token-count edges of the length buckets; longer examples form one last bucket",
    )

    @field_validator("length_buckets")
    @classmethod
    def _increasing(cls, value: list[int]) -> list[int]:
        if not value or value[0] < 1 or value != sorted(set(value)):
            raise ValueError("must be a non-empty, strictly increasing list of positive token counts")
        return value


class PromotionParams(Section):
    min_metric: float = Field(0.75, description="absolute floor on the primary dev metric")
    tolerance: float = Field(0.01, ge=0, description="allowed drop against the current champion")
    max_latency_ms: float = Field(50.0, gt=0, description="p95 batch-1 CPU latency budget")
    baseline_margin: float = Field(
        0.02,
        ge=-1.0,
        le=1.0,
        description="the candidate must beat the task's trivial baseline (majority class / mean) by this; a negative "
        "value lets a model below the baseline through, for wiring checks on a few rows only (tests, smoke profile)",
    )
    confidence: float = Field(
        0.95,
        ge=0.5,
        lt=1,
        description="the candidate must beat baseline + margin in at least this share of paired bootstrap resamples "
        "of the dev examples (a win within noise on a small dev set does not count); intervals are at this level",
    )
    bootstrap_resamples: int = Field(
        1000, ge=1, description="paired bootstrap resamples of the dev examples (seeded) behind every comparison"
    )


class ServingParams(Section):
    """How the registered student is served by `mlflow models serve` (see docs/registry.md)."""

    export: Literal["auto", "none", "int8", "onnx", "onnx-int8"] = Field(
        "auto",
        description="which form of the student to package: auto = the fastest export that passed its "
        "agreement check (timed at registration, fp32 included); none = fp32 torch; or one export by name",
    )
    port: int = Field(5001, ge=1, le=65535, description="`make serve` port (env DISTILFLOW_SERVE_PORT wins)")
    threads: int = Field(1, ge=0, description="intra-op threads per request in the server; 0 = library default")
    workers: int = Field(1, ge=1, description="uvicorn worker processes of `mlflow models serve`")
    access_log: bool = Field(False, description="uvicorn's access log line per request (costs CPU per request)")
    max_rows: int = Field(256, ge=1, description="rows per request; more is answered with HTTP 400")
    max_chars: int | None = Field(
        None,
        ge=1,
        description="texts are cut to this many characters before tokenizing; null: 32 per token of "
        "tokenize.max_length (a WordPiece token of English text is far shorter), so the cap follows the token cap",
    )
    max_body_bytes: int = Field(
        1_000_000, ge=1, description="a request body above this many bytes gets HTTP 413 before it is parsed"
    )
    min_agreement: float = Field(
        0.995, ge=0, le=1, description="an export is served only if its dev predictions match fp32's on this share"
    )


class RegisterParams(Section):
    tracking_uri: str | None = Field(
        None, description="MLflow tracking URI; default the project's sqlite store (MLFLOW_TRACKING_URI wins)"
    )
    model_prefix: str = Field(
        "distilflow",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        description="registered models are PREFIX-<task>-student and PREFIX-<task>-teacher: one name means one "
        "pipeline's models, so the GLUE suite (distilflow-glue) never gates against, serves or rolls back this "
        "project's own",
    )
    promotion: PromotionParams = PromotionParams()
    serving: ServingParams = ServingParams()
    register_teacher: bool = True
    promote: bool = Field(
        True, description="false: register and report the gate's decision but never move @champion (smoke runs)"
    )


class GlueParams(Section):
    """The GLUE suite (`distilflow glue`, `make glue`): which task folders to run and where each task's workspace
    lives. No stage reads this section, so editing it reruns no stage (dvc.yaml lists it nowhere)."""

    root: str = Field(
        Paths(Path()).demo_dir.as_posix(),  # data/demo: the embedded demos, relative to the project
        min_length=1,
        description="folder holding one folder per GLUE task, named as GLUE's download script names them (SST-2, "
        "CoLA, MRPC, STS-B, ...) or as the embedded demos are (sst2, mrpc, stsb); relative to the project",
    )
    tasks: list[str] = Field(
        default_factory=lambda: list(TASKS),
        min_length=1,
        description="the tasks to run, in this order; a task whose folder is absent under root is skipped",
    )
    workspaces: str = Field(
        "glue",
        min_length=1,
        description="folder for the per-task workspaces (git + DVC projects, one per task; git-ignored)",
    )
    profile: str | None = Field(
        None,
        description="a profile applied to every task after its recipe: NAME of flows/profiles/NAME.yaml or a YAML "
        "path, e.g. smoke for a wiring check",
    )

    @field_validator("tasks")
    @classmethod
    def _known_tasks(cls, value: list[str]) -> list[str]:
        unknown = [name for name in value if name not in TASKS]
        if unknown:
            raise ValueError(f"unknown GLUE tasks {unknown}; known: {', '.join(TASKS)}")
        if len(set(value)) != len(value):
            raise ValueError("each task at most once")
        return value
