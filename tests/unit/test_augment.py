"""Word-level augmentation, the transfer set it builds with the teacher, and BERT's MLM masking."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from datasets import Dataset
from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

from distilflow.config.loading import parse_params
from distilflow.config.training_params import AugmentParams
from distilflow.data.rewrites import Vocabulary, augment_rows, neighbour_table, rewrite, segments, split_words
from distilflow.export.teacher_onnx import LOGIT_TOLERANCE
from distilflow.stages.augment import build_transfer_set
from distilflow.stages.pretrain import mask_tokens

WORDS = ["good", "great", "fine", "bad", "awful", "poor", "movie", "film", "plot", "the", "a", "was", "is", "not"]
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, "##s", "##ly", ",", "."]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> BertTokenizerFast:
    folder = tmp_path_factory.mktemp("vocab")
    (folder / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    tokenizer: BertTokenizerFast = BertTokenizerFast.from_pretrained(str(folder))
    return tokenizer


def clustered_embeddings() -> torch.Tensor:
    """Positive words near one direction, negative near another, the rest elsewhere: known neighbours."""
    generator = torch.Generator().manual_seed(0)
    table = torch.randn(len(VOCAB), 16, generator=generator) * 0.05
    for word in ("good", "great", "fine"):
        table[VOCAB.index(word), 0] += 1.0
    for word in ("bad", "awful", "poor"):
        table[VOCAB.index(word), 1] += 1.0
    for word in ("movie", "film", "plot"):
        table[VOCAB.index(word), 2] += 1.0
    return table


@pytest.fixture(scope="module")
def vocab(tokenizer: BertTokenizerFast) -> Vocabulary:
    return Vocabulary.from_teacher(tokenizer, clustered_embeddings(), k=2)


def test_neighbours_come_from_the_embedding_space_and_exclude_non_words(vocab: Vocabulary) -> None:
    good, bad, movie = (VOCAB.index(w) for w in ("good", "bad", "movie"))
    assert {VOCAB[i] for i in vocab.neighbours[good]} == {"great", "fine"}
    assert {VOCAB[i] for i in vocab.neighbours[bad]} == {"awful", "poor"}
    assert {VOCAB[i] for i in vocab.neighbours[movie]} == {"film", "plot"}
    for token in ("[CLS]", "[MASK]", "##s", ","):
        assert (vocab.neighbours[VOCAB.index(token)] == -1).all(), token


def test_only_the_words_of_the_text_get_neighbours_the_same_ones(
    tokenizer: BertTokenizerFast, vocab: Vocabulary
) -> None:
    used = [tokenizer("a good movie")["input_ids"]]
    restricted = Vocabulary.from_teacher(tokenizer, clustered_embeddings(), k=2, used=used)
    good, movie, bad = (VOCAB.index(w) for w in ("good", "movie", "bad"))
    assert (restricted.neighbours[[good, movie]] == vocab.neighbours[[good, movie]]).all()
    assert {VOCAB[i] for i in restricted.neighbours[good]} == {"great", "fine"}  # candidates outside the text
    assert (restricted.neighbours[bad] == -1).all()  # not in the text: never rewritten, no row computed


def test_neighbour_table_needs_enough_candidates() -> None:
    with pytest.raises(ValueError, match="candidate words"):
        neighbour_table(torch.randn(3, 4), np.array([True, True, False]), k=2)


def test_words_and_segments_follow_word_pieces(tokenizer: BertTokenizerFast, vocab: Vocabulary) -> None:
    ids = tokenizer("the films was goodly", "a plot")["input_ids"]
    parts = segments(ids, vocab)
    assert len(parts) == 2
    words = split_words(parts[0], vocab.continues_word)
    assert [tokenizer.convert_ids_to_tokens(w) for w in words] == [["the"], ["film", "##s"], ["was"], ["good", "##ly"]]


def test_rewrite_keeps_the_special_token_frame_and_segment_types(
    tokenizer: BertTokenizerFast, vocab: Vocabulary
) -> None:
    encoded = tokenizer("the movie , good", "the plot was bad")
    config = AugmentParams(p_mask=0.0, p_replace=1.0, p_drop=0.0, p_ngram=0.0)
    ids, types = rewrite(encoded["input_ids"], vocab, config, np.random.default_rng(0), max_length=64)
    tokens = tokenizer.convert_ids_to_tokens(ids)
    assert tokens[0] == "[CLS]" and tokens.count("[SEP]") == 2 and tokens[-1] == "[SEP]"
    assert types == encoded["token_type_ids"]  # same word count: replacement keeps every word
    first = tokens[1 : tokens.index("[SEP]")]
    assert first[1] in ("film", "plot") and first[3] in ("great", "fine")  # neighbours only, never the word itself
    assert first[0] != "the" and first[2] == ","  # punctuation has no neighbours, so it stays


def test_rewrite_probabilities_are_honoured(tokenizer: BertTokenizerFast, vocab: Vocabulary) -> None:
    ids = tokenizer("the movie was good")["input_ids"]
    masked, _ = rewrite(
        ids, vocab, AugmentParams(p_mask=1.0, p_replace=0.0, p_drop=0.0, p_ngram=0.0), np.random.default_rng(0), 64
    )
    assert tokenizer.convert_ids_to_tokens(masked) == ["[CLS]", *["[MASK]"] * 4, "[SEP]"]
    dropped, _ = rewrite(
        ids, vocab, AugmentParams(p_mask=0.0, p_replace=0.0, p_drop=1.0, p_ngram=0.0), np.random.default_rng(0), 64
    )
    assert len(dropped) == 3, "dropping every word keeps one, never an empty text"
    sampled, _ = rewrite(
        tokenizer("the movie was not good , the plot was bad")["input_ids"],
        vocab,
        AugmentParams(p_mask=0.0, p_replace=0.0, p_drop=0.0, p_ngram=1.0, ngram_min=2, ngram_max=2),
        np.random.default_rng(0),
        64,
    )
    assert len(sampled) == 4  # [CLS] two words [SEP]


def test_augment_rows_makes_distinct_copies_of_eligible_rows(tokenizer: BertTokenizerFast, vocab: Vocabulary) -> None:
    texts = ["the movie was good", "bad", "the plot was not great , the film was poor"]
    rows = tokenizer(texts)["input_ids"]
    config = AugmentParams(copies=3, min_words=3)
    ids, types, sources = augment_rows(rows, vocab, config, seed=0, max_length=64)
    assert sorted(set(sources)) == [0, 2], "one-word rows are not rewritten"
    assert sources.count(2) == 3
    for row, source in zip(ids, sources, strict=True):
        assert row != rows[source]
    assert len({tuple(row) for row in ids}) == len(ids)
    assert all(len(a) == len(b) for a, b in zip(ids, types, strict=True))
    longest_only = augment_rows(rows, vocab, AugmentParams(copies=1, min_words=1, max_source_rows=1), 0, 64)
    assert longest_only[2] == [2]
    again = augment_rows(rows, vocab, config, seed=0, max_length=64)
    assert again[0] == ids, "the same seed gives the same transfer set"


def test_transfer_set_labels_rewrites_with_the_teacher(tokenizer: BertTokenizerFast) -> None:
    torch.manual_seed(0)
    teacher = BertForSequenceClassification(
        BertConfig(
            vocab_size=len(VOCAB),
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
            num_labels=2,
        )
    )
    teacher.get_input_embeddings().weight.data.copy_(clustered_embeddings())
    teacher.eval()
    texts = ["the movie was good", "the plot was bad", "a film", "good"]
    encoded = tokenizer(texts)
    train = Dataset.from_dict(
        {
            "input_ids": encoded["input_ids"],
            "token_type_ids": encoded["token_type_ids"],
            "labels": [1, 0, 1, 1],
            "length": [len(x) for x in encoded["input_ids"]],
        }
    )
    for backend in ("torch", "onnx"):
        params = parse_params({"augment": {"copies": 2, "min_words": 2, "neighbours": 2, "teacher_backend": backend}})
        transfer, stats = build_transfer_set(train, teacher, tokenizer, params)
        assert stats["teacher_backend"] == backend
        assert stats["train_rows"] == 4 and stats["transfer_rows"] == len(transfer) == 4 + stats["augmented_rows"]
        assert stats["augmented_rows"] == 6  # three rows with >= 2 words, two copies each
        logits = np.asarray(transfer["teacher_logits"])
        assert logits.shape == (len(transfer), 2)
        augmented = np.asarray(transfer["augmented"])
        labels = np.asarray(transfer["labels"])
        assert labels[:4].tolist() == [1, 0, 1, 1], "original rows keep their gold labels"
        assert (labels[augmented] == logits[augmented].argmax(-1)).all(), "rewrites carry the teacher's prediction"
        with torch.inference_mode():
            direct = teacher(input_ids=torch.tensor([transfer[0]["input_ids"]])).logits.numpy()
        np.testing.assert_allclose(logits[0], direct[0], atol=1e-5 if backend == "torch" else LOGIT_TOLERANCE)
    # The ONNX run checked every row (fewer than teacher_check_rows) against eager PyTorch and recorded it.
    assert stats["teacher_check_rows"] == len(transfer)
    assert stats["teacher_label_agreement"] == 1.0
    assert stats["teacher_max_logit_difference"] < LOGIT_TOLERANCE


def test_mlm_masking_follows_berts_80_10_10_rule() -> None:
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(10, 1000, (400, 50), generator=generator)
    input_ids[:, 0], input_ids[:, -1] = 2, 3
    attention = torch.ones_like(input_ids)
    attention[:, 40:] = 0
    corrupted, chosen = mask_tokens(
        input_ids,
        attention,
        torch.tensor([0, 1, 2, 3, 4]),
        mask_id=4,
        vocab_size=1000,
        mask_prob=0.15,
        generator=generator,
    )
    assert not chosen[:, 0].any() and not chosen[:, 40:].any(), "special tokens and padding are never chosen"
    share = chosen.sum().item() / attention[:, 1:].sum().item()
    assert share == pytest.approx(0.15, abs=0.01)
    masked = (corrupted[chosen] == 4).float().mean().item()
    unchanged = (corrupted[chosen] == input_ids[chosen]).float().mean().item()
    assert masked == pytest.approx(0.8, abs=0.02)
    assert unchanged == pytest.approx(0.1, abs=0.02)  # (random draws rarely hit the original id)
    assert (corrupted[~chosen] == input_ids[~chosen]).all()
