"""The base of every params.yaml section model."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    # extra="forbid": a typo such as ``distill.temprature`` fails with the key named instead of running with a
    # default; frozen: settings are read, never changed, after params.yaml is loaded.
    model_config = ConfigDict(extra="forbid", frozen=True)
