"""How a classifier turns a sentence's token vectors into one vector: BERT's ``[CLS]`` pooler, or the mean of tokens.

all-MiniLM-L6-v2 (the packaged teacher) was trained by sentence-transformers with *mean pooling*; its ``[CLS]``
pooler was never trained for that objective. ``transformers``' BertForSequenceClassification always reads ``[CLS]``
through the pooler, so a mean-pooled classifier is the subclass below. Which one a saved model is travels in its
``config.json`` (``distilflow_pooling``), and every loader in the project goes through :func:`load` so that a
mean-pooled model is never read back as a ``[CLS]`` one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional
from transformers import AutoConfig, AutoModelForSequenceClassification, BertForSequenceClassification, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

from distilflow.config.training_params import POOLING_SETTINGS, POOLINGS
from distilflow.numerics import quantize_dynamic_int8

CONFIG_KEY = "distilflow_pooling"  # in config.json; absent means the architecture's own ([CLS]) pooling
CLS, MEAN = POOLINGS
CHECKPOINT = POOLING_SETTINGS[-1]  # a setting, not a pooling: read it from the checkpoint's sentence-transformers files


class MeanPooledBertForSequenceClassification(BertForSequenceClassification):
    """BERT with its classification head on the attention-masked mean of the last layer's token vectors.

    The ``[CLS]`` pooler is dropped, not just bypassed: an unused parameter would stop DDP at its first step.
    """

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.num_labels: int = config.num_labels
        self.bert.pooler = None

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> SequenceClassifierOutput:
        outputs = self.bert(
            input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids, return_dict=True, **kwargs
        )
        tokens = outputs.last_hidden_state
        if attention_mask is None:
            pooled = tokens.mean(dim=1)
        else:
            mask = attention_mask.unsqueeze(-1).to(tokens.dtype)
            pooled = (tokens * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        logits = self.classifier(self.dropout(pooled))
        loss = None if labels is None else _loss(logits, labels, self.config.problem_type, self.num_labels)
        return SequenceClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


def _loss(logits: torch.Tensor, labels: torch.Tensor, problem_type: str | None, num_labels: int) -> torch.Tensor:
    """BertForSequenceClassification's losses for the two problem types this project trains."""
    if problem_type == "regression" or num_labels == 1:
        return functional.mse_loss(logits.squeeze(-1), labels.to(logits.dtype).view(-1))
    return functional.cross_entropy(logits.view(-1, num_labels), labels.view(-1))


def checkpoint_pooling(folder: str | Path) -> str:
    """The pooling a sentence-transformers checkpoint was trained with; ``cls`` for any other checkpoint.

    sentence-transformers keeps it in ``modules.json`` → the Pooling module's folder → ``config.json``. Max and
    other poolings have no classifier here, so they are refused by name rather than replaced in silence.
    """
    folder = Path(folder)
    modules_file = folder / "modules.json"
    if not modules_file.is_file():
        return CLS
    modules = json.loads(modules_file.read_text())
    pooling_dirs = [m.get("path", "") for m in modules if str(m.get("type", "")).endswith(".Pooling")]
    if not pooling_dirs or not (folder / pooling_dirs[0] / "config.json").is_file():
        return CLS
    config = json.loads((folder / pooling_dirs[0] / "config.json").read_text())
    prefix = "pooling_mode_"
    modes = sorted(key.removeprefix(prefix) for key, on in config.items() if key.startswith(prefix) and on)
    if modes == ["cls_token"]:
        return CLS
    if modes == ["mean_tokens"]:
        return MEAN
    raise ValueError(
        f"{folder}: the checkpoint pools by {' + '.join(modes) or 'nothing'}; distilflow's classifiers pool by "
        f"{' or '.join(POOLINGS)}: set finetune.pooling to one of them"
    )


def resolve(setting: str, folder: str | Path) -> str:
    """``cls`` or ``mean`` for a ``finetune.pooling`` setting (``checkpoint`` reads ``folder``)."""
    if setting == CHECKPOINT:
        return checkpoint_pooling(folder) if Path(folder).is_dir() else CLS
    if setting not in POOLINGS:
        raise ValueError(f"pooling {setting!r}: expected one of {', '.join(POOLING_SETTINGS)}")
    return setting


def of(config: Any) -> str:
    return str(getattr(config, CONFIG_KEY, None) or CLS)


def _mean_pooled_class(config: Any) -> type[MeanPooledBertForSequenceClassification]:
    if config.model_type != "bert":
        raise ValueError(f"mean pooling is built for BERT models; this one is a {config.model_type!r}")
    return MeanPooledBertForSequenceClassification


def from_pretrained(
    source: str | Path, pooling: str | None = None, dtype: torch.dtype | None = None, **config: Any
) -> PreTrainedModel:
    """A classifier from a checkpoint. ``pooling`` None keeps what the checkpoint's config says (a trained model);
    ``cls`` or ``mean`` sets it (a fresh head). ``config``: config fields to set, such as ``num_labels``."""
    settings = AutoConfig.from_pretrained(str(source), **config)  # read once: it names the pooling too
    pooling = of(settings) if pooling is None else pooling
    weights: dict[str, Any] = {} if dtype is None else {"dtype": dtype}
    if pooling == MEAN:
        setattr(settings, CONFIG_KEY, MEAN)  # after: from_pretrained drops keyword fields the config does not know
        model: PreTrainedModel = _mean_pooled_class(settings).from_pretrained(str(source), config=settings, **weights)
        return model
    if hasattr(settings, CONFIG_KEY):  # a mean-pooled checkpoint given a [CLS] head: its config must say so
        delattr(settings, CONFIG_KEY)
    loaded: PreTrainedModel = AutoModelForSequenceClassification.from_pretrained(
        str(source), config=settings, **weights
    )
    return loaded


def from_config(config: Any) -> PreTrainedModel:
    """The untrained architecture a config names, pooling included (to load int8 or other weights into)."""
    if of(config) == MEAN:
        return _mean_pooled_class(config)(config)
    model: PreTrainedModel = AutoModelForSequenceClassification.from_config(config)
    return model


def load_int8(folder: str | Path, weights_file: str = "model.pt") -> torch.nn.Module:
    """A dynamic-int8 state dict back in its model: the architecture config.json names (pooling included), quantized
    as the export quantized it, then the int8 weights. The export's check and the served model both load this way."""
    skeleton = from_config(AutoConfig.from_pretrained(str(folder))).eval()
    model: torch.nn.Module = quantize_dynamic_int8(skeleton)
    model.load_state_dict(torch.load(Path(folder) / weights_file, weights_only=True))
    return model
