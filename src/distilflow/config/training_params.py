"""The sections of the jobs that train or label with a model: ``run`` (where and in what precision every such
stage computes), ``finetune``, ``augment``, ``pretrain`` and ``distill`` (with its ``student`` and ``export``)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from distilflow.config.section import Section


class RunParams(Section):
    """How every stage that runs a model computes: finetune and pretrain/distill train with it, evaluate scores
    with it. One section, not finetune's, so that no stage reads another stage's settings for it."""

    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: CUDA when a GPU is visible, else CPU")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="auto: bf16 on CUDA where supported, else fp16 with a GradScaler; fp32 on CPU"
    )
    eval_batch_size: int = Field(
        128, ge=1, description="rows per batch where a model only scores: dev checks while training, evaluate"
    )


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


POOLINGS = ("cls", "mean")  # the classifiers models/pooling.py builds
POOLING_SETTINGS = (*POOLINGS, "checkpoint")  # checkpoint: the pooling its sentence-transformers files name


def _poolings(values: list[str]) -> list[str]:
    unknown = [value for value in values if value not in POOLING_SETTINGS]
    if unknown or not values:
        raise ValueError(f"pooling {unknown or values}: each must be one of {', '.join(POOLING_SETTINGS)}")
    return values


class SearchBudget(Section):
    """What every selection protocol spends (training.search): trials, each a share of a full run."""

    trials: int = Field(0, ge=0, description="0: train once with the settings as written; N: N trials choose first")
    trial_share: float = Field(0.5, gt=0, le=1, description="each trial trains this share of a full run's steps")


def _positive(values: list[float]) -> list[float]:
    if not values or any(value <= 0 for value in values):
        raise ValueError("needs at least one value, each above 0")
    return values


class SearchParams(SearchBudget):
    """The teacher's selection protocol: settings chosen by Optuna on the held-out slice of train."""

    learning_rates: list[float] = Field(
        default_factory=lambda: [2e-5, 5e-5, 1e-4, 2e-4, 5e-4],
        description="BERT's grid reaches 5e-5; small models want larger rates, so the grid goes on to 5e-4",
    )
    epochs: list[float] = Field(default_factory=lambda: [2.0, 3.0, 4.0])
    poolings: list[str] = Field(
        default_factory=lambda: ["cls", "mean"], description="[CLS] pooler or mean of tokens (models/pooling.py)"
    )
    restarts: int = Field(
        1, ge=1, description="seeds per setting (seed, seed + 1, ...): BERT §4.1's restarts for small, unstable tasks"
    )

    @field_validator("poolings")
    @classmethod
    def _known_poolings(cls, values: list[str]) -> list[str]:
        return _poolings(values)

    @field_validator("learning_rates", "epochs")
    @classmethod
    def _not_empty(cls, values: list[float]) -> list[float]:
        return _positive(values)


class FinetuneParams(TrainingParams):
    RECIPE: ClassVar[dict[str, Any]] = dict(
        epochs=2.0, batch_size=32, learning_rate=1e-4, warmup_ratio=0.1, eval_every=25, early_stopping_patience=4
    )

    grad_accum_steps: int = Field(1, ge=1)
    checkpoint_every: int = Field(50, ge=1, description="save a resumable checkpoint every N optimizer steps")
    freeze_embeddings: bool = Field(
        True, description="keep the word-embedding table fixed: much faster on CPU, usually within 0.3 points"
    )
    pooling: str = Field(
        "checkpoint", description="cls | mean | checkpoint (the pooling the teacher checkpoint was trained with)"
    )
    search: SearchParams = SearchParams()

    @field_validator("pooling")
    @classmethod
    def _known_pooling(cls, value: str) -> str:
        return _poolings([value])[0]


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


class DistillSearchParams(SearchBudget):
    """The student's selection protocol, as the teacher's: trials scored on the held-out slice of train."""

    learning_rates: list[float] = Field(default_factory=lambda: [2e-4, 5e-4, 1e-3, 2e-3])
    temperatures: list[float] = Field(default_factory=lambda: [1.0, 2.0, 4.0])
    alphas: list[float] = Field(
        default_factory=lambda: [0.5, 0.9], description="soft-target weight; 1 - alpha on the gold labels"
    )
    inits: list[str] = Field(
        default_factory=lambda: ["teacher-projected", "teacher-layers"], description="where the student starts"
    )
    trial_share: float = Field(0.25, gt=0, le=1, description="each trial trains this share of a full run's steps")

    @field_validator("learning_rates", "temperatures")
    @classmethod
    def _not_empty(cls, values: list[float]) -> list[float]:
        return _positive(values)

    @field_validator("alphas")
    @classmethod
    def _weights(cls, values: list[float]) -> list[float]:
        if not values or any(not 0 <= value <= 1 for value in values):
            raise ValueError("needs at least one value, each from 0 to 1")
        return values

    @field_validator("inits")
    @classmethod
    def _known_inits(cls, values: list[str]) -> list[str]:
        if not values or any(value not in STUDENT_INITS for value in values):
            raise ValueError(f"needs at least one of {', '.join(STUDENT_INITS)}")
        return values


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
    search: DistillSearchParams = DistillSearchParams()
