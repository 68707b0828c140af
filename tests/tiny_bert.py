"""The tiny BERT classifier the unit tests train, export and score: random weights, seeded, built in milliseconds."""

from __future__ import annotations

import torch
from transformers import BertConfig, BertForSequenceClassification


def tiny_bert(vocab_size: int, seed: int = 0, num_labels: int = 2) -> BertForSequenceClassification:
    """2 layers, hidden 32, 2 heads: big enough to have BERT's every part, small enough for a unit test."""
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        num_labels=num_labels,
    )
    return BertForSequenceClassification(config)
