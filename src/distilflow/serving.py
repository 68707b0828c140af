"""The MLflow pyfunc that serves a distilflow model: raw text in, label and score out.

The tokenizer and weights travel inside the logged model (artifact ``model``), so
``mlflow models serve -m models:/distilflow-sst2-student@champion`` needs nothing but this package.
"""

from __future__ import annotations

from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd

MAX_ROWS = 256


class BadRequest(ValueError):
    """Input a client can fix; MLflow's server turns this into a 4xx with our message."""


class TextClassifier(mlflow.pyfunc.PythonModel):
    """Wraps a Hugging Face sequence classifier and its tokenizer."""

    def load_context(self, context: Any) -> None:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        folder = context.artifacts["model"]
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.model = AutoModelForSequenceClassification.from_pretrained(folder)
        self.model.eval()
        config = self.model.config
        self.fields: list[str] = list(config.distilflow_fields)
        self.regression = config.problem_type == "regression"
        self.labels = [config.id2label[i] for i in range(config.num_labels)]
        self.max_length: int = int(getattr(config, "distilflow_max_length", 128))
        torch.set_num_threads(max(1, torch.get_num_threads()))

    def _texts(self, model_input: Any) -> list[list[str]]:
        if isinstance(model_input, pd.DataFrame):
            frame = model_input
        elif isinstance(model_input, list | np.ndarray | pd.Series):
            frame = pd.DataFrame({self.fields[0]: list(model_input)})
        elif isinstance(model_input, str):
            frame = pd.DataFrame({self.fields[0]: [model_input]})
        else:
            raise BadRequest(f"expected a list of strings or a table with columns {self.fields}")
        if len(frame) == 0:
            raise BadRequest("no rows to predict")
        if len(frame) > MAX_ROWS:
            raise BadRequest(f"{len(frame)} rows in one request; send at most {MAX_ROWS}")
        if len(self.fields) == 1 and list(frame.columns) == [0]:
            frame = frame.rename(columns={0: self.fields[0]})
        missing = [field for field in self.fields if field not in frame.columns]
        if missing:
            raise BadRequest(f"missing column(s) {missing}; this model reads {self.fields}")
        columns = []
        for field in self.fields:
            values = frame[field].tolist()
            bad = [i for i, value in enumerate(values) if not isinstance(value, str) or not value.strip()]
            if bad:
                raise BadRequest(f"column {field!r}: rows {bad[:10]} are not non-empty strings")
            columns.append(values)
        return columns

    def predict(self, context: Any, model_input: Any, params: dict[str, Any] | None = None) -> pd.DataFrame:
        import torch

        texts = self._texts(model_input)
        encoded = self.tokenizer(*texts, truncation=True, max_length=self.max_length, padding=True,
                                 return_tensors="pt", return_overflowing_tokens=False, return_length=True)
        full_lengths = [len(ids) for ids in self.tokenizer(*texts, truncation=False)["input_ids"]]
        encoded.pop("length", None)
        with torch.inference_mode():
            logits = self.model(**encoded).logits.float()
        result = pd.DataFrame({"truncated": [length > self.max_length for length in full_lengths]})
        if self.regression:
            result.insert(0, "score", logits[:, 0].clamp(0.0, 5.0).numpy())
            return result
        probabilities = torch.softmax(logits, dim=-1)
        score, index = probabilities.max(dim=-1)
        result.insert(0, "label", [self.labels[i] for i in index.tolist()])
        result.insert(1, "score", score.numpy())
        return result
