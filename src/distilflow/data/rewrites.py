"""Word-level data augmentation for distillation (TinyBERT, Jiao et al. 2020; Tang et al. 2019).

The teacher can label any text, so the student learns from far more examples than the gold set holds.
Each rewrite of a training example changes its words at random: a word is replaced by one of its
nearest neighbours in the teacher's input-embedding space, by ``[MASK]``, or dropped; and with some
probability only a random n-gram of the result is kept. The teacher's logits are the rewrite's label,
so a rewrite that flips the sentiment ("good" → "bad") is still a correct training example.

Everything works on token ids, not text: words are runs of word pieces (``##`` continues a word), so the
tokenized split is rewritten without re-tokenizing, and a neighbour is always a single whole-word token.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from distilflow.config.training_params import AugmentParams


def word_token_mask(vocab: Sequence[str]) -> np.ndarray:
    """Vocabulary entries that are whole words with a letter in them: the only replacement candidates.

    Word pieces (``##ing``), special and unused tokens, digits and punctuation are left alone (swapping a
    comma for a semicolon teaches the student nothing), and so are non-ASCII entries: BERT's vocabulary
    carries single characters of many scripts that would only turn up as noise next to English words.
    """
    return np.array(
        [token.isascii() and not token.startswith(("##", "[")) and any(c.isalpha() for c in token) for token in vocab],
        dtype=bool,
    )


def neighbour_table(
    embeddings: torch.Tensor, candidates: np.ndarray, k: int, wanted: np.ndarray | None = None, chunk: int = 2048
) -> np.ndarray:
    """For every vocabulary id, its ``k`` nearest candidate ids by cosine similarity; -1 rows for non-candidates.

    ``wanted``: the ids that need a row (those in the text to rewrite); every candidate can still be a neighbour.
    A 30k vocabulary squared is seconds of CPU, and a dataset uses a fraction of it.
    """
    table = np.full((embeddings.shape[0], k), -1, dtype=np.int64)
    ids = torch.from_numpy(np.flatnonzero(candidates))
    if len(ids) <= k:
        raise ValueError(f"need more than {k} candidate words for {k} neighbours, found {len(ids)}")
    vectors = torch.nn.functional.normalize(embeddings.detach().float()[ids], dim=-1)
    queries = torch.from_numpy(np.flatnonzero(candidates if wanted is None else candidates & wanted))
    own = torch.searchsorted(ids, queries)  # each query's own column: a word is not its own neighbour
    with torch.no_grad():
        for start in range(0, len(queries), chunk):
            columns = own[start : start + chunk]
            similarity = vectors[columns] @ vectors.T
            similarity[torch.arange(len(columns)), columns] = -2.0
            nearest = similarity.topk(k, dim=-1).indices
            table[queries[start : start + chunk].numpy()] = ids[nearest].numpy()
    return table


@dataclass(frozen=True)
class Vocabulary:
    """The handful of token facts augmentation needs, taken from the teacher's tokenizer."""

    cls_id: int
    sep_id: int
    mask_id: int
    continues_word: np.ndarray
    """True for ``##`` pieces, indexed by token id."""
    neighbours: np.ndarray
    """(vocab, k) nearest whole-word ids; -1 where the token has none."""

    @classmethod
    def from_teacher(
        cls, tokenizer: object, embeddings: torch.Tensor, k: int, used: Sequence[Sequence[int]] | None = None
    ) -> Vocabulary:
        """``used``: the token ids of the text to rewrite; only their words get neighbours (None: every word)."""
        vocab = [token for token, _ in sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])]  # type: ignore[attr-defined]
        if len(vocab) > embeddings.shape[0]:
            raise ValueError(
                f"tokenizer has {len(vocab)} tokens but the teacher's embedding table only "
                f"{embeddings.shape[0]} rows; they must come from the same model"
            )
        # Tables are often padded to a round size; the extra rows are no words and get no neighbours.
        vocab += [""] * (embeddings.shape[0] - len(vocab))
        ids = {name: getattr(tokenizer, f"{name}_token_id") for name in ("cls", "sep", "mask")}
        missing = [name for name, value in ids.items() if value is None]
        if missing:
            raise ValueError(
                f"the teacher's tokenizer has no {', '.join(missing)} token; augmentation needs a BERT-style vocabulary"
            )
        return cls(
            cls_id=ids["cls"],
            sep_id=ids["sep"],
            mask_id=ids["mask"],
            continues_word=np.array([token.startswith("##") for token in vocab], dtype=bool),
            neighbours=neighbour_table(embeddings, word_token_mask(vocab), k, wanted=_present(used, len(vocab))),
        )


def _present(rows: Sequence[Sequence[int]] | None, size: int) -> np.ndarray | None:
    if rows is None:
        return None
    present = np.zeros(size, dtype=bool)
    for row in rows:
        present[np.asarray(row, dtype=np.int64)] = True
    return present


def split_words(piece_ids: Sequence[int], continues_word: np.ndarray) -> list[list[int]]:
    """Group word pieces into words: a ``##`` piece belongs to the word before it."""
    words: list[list[int]] = []
    for token in piece_ids:
        if words and continues_word[token]:
            words[-1].append(token)
        else:
            words.append([token])
    return words


def segments(input_ids: Sequence[int], vocab: Vocabulary) -> list[list[int]]:
    """The text segments of ``[CLS] a [SEP]`` or ``[CLS] a [SEP] b [SEP]``, without special tokens."""
    ids = list(input_ids)
    if ids and ids[0] == vocab.cls_id:
        ids = ids[1:]
    parts: list[list[int]] = [[]]
    for token in ids:
        if token == vocab.sep_id:
            parts.append([])
        else:
            parts[-1].append(token)
    return parts[:-1] if len(parts) > 1 else parts


def rewrite_words(
    words: list[list[int]], vocab: Vocabulary, config: AugmentParams, rng: np.random.Generator
) -> list[list[int]]:
    out: list[list[int]] = []
    for word in words:
        draw = rng.random()
        if draw < config.p_mask:
            out.append([vocab.mask_id])
        elif draw < config.p_mask + config.p_replace:
            # Only single-piece words have neighbours; a longer word is kept rather than half-replaced.
            candidates = vocab.neighbours[word[0]] if len(word) == 1 else None
            if candidates is not None and candidates[0] >= 0:
                out.append([int(rng.choice(candidates))])
            else:
                out.append(word)
        elif draw < config.p_mask + config.p_replace + config.p_drop:
            continue
        else:
            out.append(word)
    return out or words[:1]


def rewrite(
    input_ids: Sequence[int], vocab: Vocabulary, config: AugmentParams, rng: np.random.Generator, max_length: int
) -> tuple[list[int], list[int]]:
    """One random rewrite of an encoded example: (input_ids, token_type_ids) with special tokens in place."""
    parts = [split_words(part, vocab.continues_word) for part in segments(input_ids, vocab)]
    rewritten = [rewrite_words(words, vocab, config, rng) for words in parts]
    if len(rewritten) == 1 and rng.random() < config.p_ngram:
        words = rewritten[0]
        n = int(rng.integers(config.ngram_min, config.ngram_max + 1))
        if n < len(words):
            start = int(rng.integers(0, len(words) - n + 1))
            rewritten[0] = words[start : start + n]
    ids = [vocab.cls_id]
    types = [0]
    for segment, words in enumerate(rewritten):
        pieces = [token for word in words for token in word] + [vocab.sep_id]
        ids.extend(pieces)
        types.extend([segment] * len(pieces))
    if len(ids) > max_length:  # rewrites never grow a word, but keep the tokenizer's limit regardless
        ids, types = [*ids[: max_length - 1], vocab.sep_id], types[:max_length]
    return ids, types


def word_count(input_ids: Sequence[int], vocab: Vocabulary) -> int:
    return sum(len(split_words(part, vocab.continues_word)) for part in segments(input_ids, vocab))


def augment_rows(
    input_ids: Sequence[Sequence[int]], vocab: Vocabulary, config: AugmentParams, seed: int, max_length: int
) -> tuple[list[list[int]], list[list[int]], list[int]]:
    """``config.copies`` distinct rewrites of each eligible example: (input_ids, token_type_ids, source row).

    Eligible: at least ``min_words`` words; with ``max_source_rows`` only the longest that many, since long
    examples have the most room for distinct rewrites. Rewrites equal to the original or to an earlier
    rewrite are drawn again (a few times), so copies are not wasted on duplicates.
    """
    rng = np.random.default_rng(seed)
    counts = np.array([word_count(ids, vocab) for ids in input_ids])
    eligible = np.flatnonzero(counts >= config.min_words)
    if config.max_source_rows is not None and len(eligible) > config.max_source_rows:
        longest = np.argsort(-counts[eligible], kind="stable")[: config.max_source_rows]
        eligible = np.sort(eligible[longest])
    new_ids: list[list[int]] = []
    new_types: list[list[int]] = []
    sources: list[int] = []
    for row in eligible.tolist():
        original = list(input_ids[row])
        seen = {tuple(original)}
        for _ in range(config.copies):
            for _attempt in range(5):
                ids, types = rewrite(original, vocab, config, rng, max_length)
                if tuple(ids) not in seen:
                    seen.add(tuple(ids))
                    new_ids.append(ids)
                    new_types.append(types)
                    sources.append(row)
                    break
    return new_ids, new_types, sources
