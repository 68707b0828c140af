"""The MLflow pyfunc that serves a distilflow model: raw text in, label and score out.

Everything the server needs travels inside the logged model (artifact ``model``): the tokenizer
(``tokenizer.json``), the weights (safetensors, or an ONNX file when an export was chosen) and
``distilflow_serving.json``, which says how to read requests. So
``mlflow models serve -m models:/distilflow-sst2-student@champion --env-manager local`` needs only this package.

Request handling is built for batch-1 latency: the Rust tokenizer is called once per request (it reports
truncation itself, so nothing is tokenized twice), and the forward pass runs with a fixed thread count.
Everything a client can get wrong raises :class:`BadRequest`, an ``MlflowException`` with
``INVALID_PARAMETER_VALUE``, which MLflow's scoring server answers with HTTP 400 and our message.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc import PythonModel

from distilflow.numerics import softmax

SERVING_CONFIG = "distilflow_serving.json"
MODEL_ARTIFACT = "model"
THREADS_ENV = "DISTILFLOW_SERVE_THREADS"
PAIR_ALIASES = ("sentence1", "sentence2")
# Present in sys.modules only inside `mlflow models serve` (its uvicorn app module loads the model while importing).
SCORING_APP_MODULE = "mlflow.pyfunc.scoring_server.app"
Backend = Literal["torch", "torch-int8", "onnx"]
_SURROGATE = re.compile("[\ud800-\udfff]")


class BadRequest(MlflowException):
    """Input a client can fix; MLflow's scoring server answers it with HTTP 400 and this message."""

    def __init__(self, message: str) -> None:
        super().__init__(message, error_code=INVALID_PARAMETER_VALUE)


@dataclass(frozen=True, kw_only=True)
class ServingConfig:
    """What the server must know to turn a request into model inputs; written next to the weights.

    A finished record, written whole by ``registry.packaging.serving_config``. The settings it shares with
    ``register.serving`` (``ServingParams``) have no default here: their one declaration is there, and a default
    here would be a second one that drifts (max_chars did: 20,000 here, 32 x max_length there). Not derived from
    ``ServingParams`` either, since the served model reads resolved values (``max_chars: null`` already turned into
    a number), not settings; tests/unit/test_serving_config.py ties the two."""

    task: str
    fields: tuple[str, ...]
    labels: tuple[str, ...] | None
    max_length: int
    max_rows: int
    max_chars: int
    """Texts are cut to this many characters before tokenizing, so a huge string cannot stall a worker."""
    backend: Backend = "torch"
    weights_file: str | None = None
    """For torch-int8 (a state dict) and onnx (a graph): the file, relative to the model folder."""
    export: str
    """Which export of the student this is (none, int8, onnx, onnx-int8); recorded for people, not read."""
    threads: int
    """Intra-op threads per forward pass while serving; 0 keeps the library default."""
    score_range: tuple[float, float] = (0.0, 5.0)
    aliases: tuple[tuple[str, ...], ...] = field(default_factory=tuple)
    """Other accepted column names, e.g. sentence1/sentence2 for every pair task."""
    max_body_bytes: int
    """Inside `mlflow models serve`: a request body above this gets HTTP 413 before anything parses it."""

    @property
    def regression(self) -> bool:
        return self.labels is None

    def write(self, folder: Path) -> None:
        (folder / SERVING_CONFIG).write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def read(cls, folder: Path) -> ServingConfig:
        raw = json.loads((folder / SERVING_CONFIG).read_text())
        raw["fields"] = tuple(raw["fields"])
        raw["labels"] = tuple(raw["labels"]) if raw["labels"] is not None else None
        raw["score_range"] = tuple(raw["score_range"])
        raw["aliases"] = tuple(tuple(names) for names in raw.get("aliases", ()))
        return cls(**raw)


def pair_aliases(fields: tuple[str, ...]) -> tuple[tuple[str, ...], ...]:
    """Pair tasks also accept sentence1/sentence2, whatever their own column names are."""
    return (PAIR_ALIASES,) if len(fields) == 2 and fields != PAIR_ALIASES else ()


class TextClassifier(PythonModel):
    """A Hugging Face sequence classifier (torch or ONNX Runtime) behind a Rust tokenizer."""

    config: ServingConfig

    records_output = False

    def load_context(self, context: Any) -> None:
        in_server = SCORING_APP_MODULE in sys.modules
        self.setup(Path(context.artifacts[MODEL_ARTIFACT]), apply_threads=in_server or THREADS_ENV in os.environ)
        if in_server:
            self.records_output = True
            _plain_pandas_strings()
            from distilflow.serving.body_limit import guard_requests

            guard_requests(self.config.max_body_bytes, SCORING_APP_MODULE, self.config.fields)

    @classmethod
    def from_folder(cls, folder: Path, apply_threads: bool = False) -> TextClassifier:
        """In-process use (tests, the register stage) without going through MLflow."""
        model = cls()
        model.setup(folder, apply_threads)
        return model

    def setup(self, folder: Path, apply_threads: bool) -> None:
        from tokenizers import Tokenizer

        self.config = ServingConfig.read(folder)
        threads = int(os.environ.get(THREADS_ENV, self.config.threads))
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        # The same vocabulary without truncation or padding, to find where a long text's max_length-th token
        # starts (see _token_prefixes); a separate object because requests tokenize concurrently.
        self.counter = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.counter.no_truncation()
        self.counter.no_padding()
        # Same rules as the training tokenizer: longest-first truncation, dynamic padding to the longest row.
        self.tokenizer.enable_truncation(self.config.max_length)
        pad_token = pad_token_of(folder)
        pad_id = self.tokenizer.token_to_id(pad_token)
        self.tokenizer.enable_padding(pad_id=0 if pad_id is None else pad_id, pad_token=pad_token)
        self.backend: Backend = self.config.backend
        self.input_names = ["input_ids", "attention_mask", "token_type_ids"]
        if self.backend == "onnx":
            import onnxruntime as ort

            options = ort.SessionOptions()
            if threads > 0:
                # Per-session setting: no side effect on the rest of the process.
                options.intra_op_num_threads = threads
                options.inter_op_num_threads = 1
            self.session = ort.InferenceSession(
                str(folder / self._weights_file()), options, providers=["CPUExecutionProvider"]
            )
            declared = {node.name for node in self.session.get_inputs()}
            self.input_names = [name for name in self.input_names if name in declared]
            return
        import torch

        from distilflow.models import pooling

        if self.backend == "torch-int8":
            self.model = pooling.load_int8(folder, self._weights_file())
        else:
            self.model = pooling.from_pretrained(folder)
        self.model.eval()
        # torch's thread count is process-wide, so only a serving process (or an explicit env) changes it:
        # many small concurrent requests are faster on one thread each than fighting over all cores.
        if apply_threads and threads > 0:
            torch.set_num_threads(threads)

    def _weights_file(self) -> str:
        if not self.config.weights_file:
            raise ValueError(f"{SERVING_CONFIG}: backend {self.backend} needs weights_file")
        return self.config.weights_file

    # --- request parsing -------------------------------------------------------------------------------------

    def _frame(self, model_input: Any) -> pd.DataFrame:
        # Object columns throughout: pandas' Arrow strings would refuse a lone surrogate with a UnicodeEncodeError
        # before the text checks could name the row, and cost more than they save on a few rows.
        if isinstance(model_input, pd.DataFrame):
            return model_input
        if isinstance(model_input, str):
            return pd.DataFrame({0: [model_input]})
        if isinstance(model_input, dict):
            try:
                return pd.DataFrame(
                    {
                        key: list(value) if isinstance(value, list | tuple | np.ndarray) else [value]
                        for key, value in model_input.items()
                    },
                    dtype=object,
                )
            except ValueError as error:
                raise BadRequest(f"columns of different lengths: {error}") from None
        if isinstance(model_input, list | tuple | np.ndarray | pd.Series):
            rows = list(model_input)
            width = len(self.config.fields)
            if (
                width > 1
                and rows
                and all(isinstance(row, list | tuple | np.ndarray) and len(row) == width for row in rows)
            ):
                return pd.DataFrame([list(row) for row in rows], dtype=object)
            return pd.DataFrame({0: rows}, dtype=object)
        raise BadRequest(
            f"expected a list of strings or a table with columns {list(self.config.fields)}, "
            f"got {type(model_input).__name__}"
        )

    def _columns(self, frame: pd.DataFrame) -> list[list[str]]:
        chosen = self._chosen_columns(frame)
        rows = len(frame)
        if rows == 0:
            raise BadRequest("no rows to predict: send at least one text")
        if rows > self.config.max_rows:
            raise BadRequest(f"{rows} rows in one request; send at most {self.config.max_rows}")
        columns = []
        for name in chosen:
            values = frame[name].tolist()
            bad = [(i, problem) for i, value in enumerate(values) if (problem := _text_problem(value)) is not None]
            if bad:
                shown = ", ".join(f"row {i}: {problem}" for i, problem in bad[:5])
                more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
                if isinstance(name, str):
                    where = f"column {name!r}"
                else:  # a bare list: name the position, not pandas' column number
                    where = "every text" if len(self.config.fields) == 1 else f"text {name + 1} of every pair"
                raise BadRequest(f"{where} must be a non-empty string of valid Unicode; {shown}{more}")
            columns.append(values)
        return columns

    def _chosen_columns(self, frame: pd.DataFrame) -> tuple[Any, ...]:
        """The frame's columns that hold the texts: the task's names, an alias pair, or positions 0..n-1.

        Anything else in the frame is refused rather than ignored: a client that sends ``sentence2`` to a
        single-sentence model, or a third value per pair, believes the model reads it.
        """
        fields = self.config.fields
        present = list(frame.columns)
        duplicated = sorted({str(name) for name in present if present.count(name) > 1})
        if duplicated:
            raise BadRequest(f"column names repeat: {duplicated}; name each column once")
        unit = "pair of strings" if len(fields) == 2 else "string"
        if all(isinstance(name, int) for name in present):  # a bare list (or list of rows) arrives as positions
            if present == list(range(len(fields))):
                return tuple(present)
            raise BadRequest(
                f"each row must be one {unit}; got {len(present)} value{'s' if len(present) != 1 else ''} per row"
            )
        for names in (fields, *self.config.aliases):
            if set(names) == set(present):
                return names
        accepted = " or ".join(str(list(names)) for names in (fields, *self.config.aliases))
        raise BadRequest(
            f"this {self.config.task} model reads columns {accepted}, no other "
            f"(or a plain list of {'pairs' if len(fields) == 2 else 'strings'}); got {present}"
        )

    # --- inference ---------------------------------------------------------------------------------------------

    def _encode(self, columns: list[list[str]]) -> tuple[dict[str, np.ndarray], np.ndarray]:
        limit = self.config.max_chars
        cut = np.zeros(len(columns[0]), dtype=bool)
        for column in columns:
            for i, text in enumerate(column):
                if len(text) > limit:
                    column[i] = text[:limit]
                    cut[i] = True
        cut |= self._token_prefixes(columns)
        batch = list(zip(*columns, strict=True)) if len(columns) == 2 else columns[0]
        encodings = self.tokenizer.encode_batch(batch)
        truncated = cut | np.fromiter((bool(enc.overflowing) for enc in encodings), dtype=bool, count=len(encodings))
        arrays = {
            "input_ids": np.array([enc.ids for enc in encodings], dtype=np.int64),
            "attention_mask": np.array([enc.attention_mask for enc in encodings], dtype=np.int64),
            "token_type_ids": np.array([enc.type_ids for enc in encodings], dtype=np.int64),
        }
        return arrays, truncated

    def _token_prefixes(self, columns: list[list[str]]) -> np.ndarray:
        """Cut long texts (in place) a token or so past ``max_length`` tokens; which rows were cut.

        The truncating tokenizer also returns every overflowing window, and for a pair every window of the first
        text combined with every window of the second: a pair of 4,096-character texts made 560 encodings and
        took 200 ms, so a 1 MB body of them held a worker for tens of seconds. A text has no more tokens than
        characters, so only texts over ``max_length`` characters are counted. Cutting at a token's start keeps
        the tokens before it; the final truncation keeps fewer than ``max_length`` tokens of a text, and for a
        pair it decides by which text is longer (the longer one gets the odd token), so a pair's longer text is
        cut one token later than its shorter one and the model sees exactly the ids it saw without this step.
        """
        keep = self.config.max_length
        counts = [np.zeros(len(column), dtype=np.int64) for column in columns]
        offsets: list[dict[int, list[tuple[int, int]]]] = []
        for column, count in zip(columns, counts, strict=True):
            long = [i for i, text in enumerate(column) if len(text) > keep]
            encodings = self.counter.encode_batch([column[i] for i in long], add_special_tokens=False) if long else []
            offsets.append({i: encoding.offsets for i, encoding in zip(long, encodings, strict=True)})
            count[long] = [len(encoding.offsets) for encoding in encodings]
        cut = np.zeros(len(columns[0]), dtype=bool)
        for side, (column, count) in enumerate(zip(columns, counts, strict=True)):
            other = counts[1 - side] if len(columns) == 2 else np.zeros_like(count)
            for i, spans in offsets[side].items():
                limit = keep if 0 < count[i] <= other[i] else keep + 1
                if len(spans) > limit:
                    column[i] = column[i][: spans[limit][0]]
                    cut[i] = True
        return cut

    def logits(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        if self.backend == "onnx":
            outputs = self.session.run(None, {name: arrays[name] for name in self.input_names})
            return np.asarray(outputs[0], dtype=np.float32)
        import torch

        with torch.inference_mode():
            tensors = {name: torch.from_numpy(arrays[name]) for name in self.input_names}
            return self.model(**tensors).logits.float().numpy()

    def outputs(self, model_input: Any) -> dict[str, list[Any]]:
        """Columns of the answer as plain Python lists: label (classification), score, truncated."""
        columns = self._columns(self._frame(model_input))
        arrays, truncated = self._encode(columns)
        logits = self.logits(arrays)
        if self.config.regression:
            low, high = self.config.score_range
            return {"score": np.clip(logits[:, 0], low, high).tolist(), "truncated": truncated.tolist()}
        probabilities = softmax(logits)
        index = probabilities.argmax(axis=-1)
        assert self.config.labels is not None
        return {
            "label": [self.config.labels[i] for i in index],
            "score": probabilities[np.arange(len(index)), index].tolist(),
            "truncated": truncated.tolist(),
        }

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame | list[dict[str, Any]]:
        """A DataFrame with columns label, score, truncated (STS-B: score, truncated).

        Under the logged (column-based) signature MLflow hands over a DataFrame; called directly, a list of
        strings (or of pairs) works too. Inside the scoring server the same rows come back as a list of
        records: MLflow serialises that to the identical JSON without a pandas round trip, which is a good
        part of the per-request CPU time for one sentence.
        """
        columns = self.outputs(model_input)
        if self.records_output:
            names = list(columns)
            return [dict(zip(names, row, strict=True)) for row in zip(*columns.values(), strict=True)]
        return pd.DataFrame(columns)


def _plain_pandas_strings() -> None:
    """In the server process only: MLflow builds several small DataFrames per request, and pandas 3's default
    Arrow-backed strings cost more than object columns at that size. Older pandas has no such option."""
    with contextlib.suppress(KeyError, ValueError):  # pandas' OptionError is a KeyError
        pd.set_option("future.infer_string", False)


def pad_token_of(folder: Path) -> str:
    """The padding token as the saved Hugging Face tokenizer names it (either file, either format)."""
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        file = folder / name
        if file.is_file():
            token = json.loads(file.read_text()).get("pad_token")
            if token:
                return str(token["content"]) if isinstance(token, dict) else str(token)
    return "[PAD]"


def _text_problem(value: Any) -> str | None:
    """Why VALUE cannot be a text to classify, or None if it can."""
    if not isinstance(value, str):
        if value is None or (isinstance(value, float) and np.isnan(value)):
            return "missing"
        return f"{type(value).__name__} {str(value)[:40]!r}"
    if not value.strip():
        return "empty string"
    # JSON may escape half of a UTF-16 pair ("\\ud800"); such a string is not Unicode text, and the tokenizer,
    # which needs UTF-8, would fail on it deep inside the request.
    surrogate = _SURROGATE.search(value)
    if surrogate is not None:
        return f"lone surrogate U+{ord(surrogate.group()):04X} at character {surrogate.start()}"
    return None
