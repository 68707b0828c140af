"""Build the embedded demo sentence-similarity dataset in GLUE STS-B layout (regression, scores 0-5).

``stsb/train.tsv`` (1,200 pairs) and ``stsb/dev.tsv`` (300 pairs), UTF-8, ``\\n`` line endings, with STS-B's ten
columns ``index genre filename year old_index source1 source2 sentence1 sentence2 score``: genre ``main-news``
(filename ``headlines``) or ``main-captions`` (``MSRvid``, ``images``), the year and an index within that file,
``none`` sources, and the score with three decimals.

The pairs come from the sentence model in ``demo_pairs.py``: each is two frames at a relation level 0-5 of the
STS-B annotation guideline (5 paraphrase, 4 a detail missing, 3 an important detail differs, 2 another action or
the opposite event, 1 only the setting shared, 0 unrelated), realised with independent synonyms and templates.
The score is the level, spread as annotators' averages are: uniform within half a point of it (kept in 0..5),
rounded to a fifth. Every file holds each level equally often, in blocks of six (one pair per level, shuffled), so
any head cut keeps the spread; news and captions are drawn half and half.

No pair (in either order) appears twice, within a split or across train and dev. Word overlap is a deliberately
imperfect cue: a paraphrase may share few words, an opposite event nearly all of them.

Run ``python data/demo/make_demo_stsb.py [OUT_DIR]``; the output is byte-identical on every run.
"""

from __future__ import annotations

import random
import sys
from collections import Counter
from pathlib import Path

from demo_pairs import NEWS, Pair, draw_blocks, sentence_case

SEED = 2027
N_TRAIN = 1200
N_DEV = 300
LEVELS = (0, 1, 2, 3, 4, 5)
COLUMNS = ("index", "genre", "filename", "year", "old_index", "source1", "source2", "sentence1", "sentence2", "score")
OUT_DIR = Path(__file__).parent / "stsb"


def score(r: random.Random, level: int) -> float:
    low, high = max(0.0, level - 0.5), min(5.0, level + 0.5)
    return round(r.uniform(low, high) * 5) / 5


def source_file(r: random.Random, pair: Pair) -> tuple[str, str, str]:
    """(genre, filename, year) as STS-B names its sources."""
    if pair.genre == NEWS:
        return "main-news", "headlines", r.choice(("2013", "2014", "2015", "2016"))
    filename = r.choice(("MSRvid", "images"))
    return "main-captions", filename, "2012" if filename == "MSRvid" else r.choice(("2014", "2015"))


def lines(r: random.Random, rows: list[Pair]) -> list[str]:
    counters: Counter[tuple[str, str]] = Counter()
    out = ["\t".join(COLUMNS)]
    for index, pair in enumerate(rows):
        genre, filename, year = source_file(r, pair)
        old_index = counters[(filename, year)]
        counters[(filename, year)] += 1
        fields = (str(index), genre, filename, year, f"{old_index:04d}", "none", "none", pair.first, pair.second)
        out.append("\t".join((*fields, f"{score(r, pair.level):.3f}")))
    return out


def main() -> None:
    out_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else OUT_DIR
    r = random.Random(SEED)
    seen: set[tuple[str, str]] = set()
    splits = {}
    for name, rows in (("train", N_TRAIN), ("dev", N_DEV)):
        pairs = draw_blocks(r, rows // len(LEVELS), LEVELS, 0.5, sentence_case, seen)
        splits[name] = lines(r, pairs)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, text in splits.items():
        (out_dir / f"{name}.tsv").write_bytes(("\n".join(text) + "\n").encode("utf-8"))
        print(f"{name}: {len(text) - 1} pairs, {len(LEVELS)} levels equally often")
    print(f"wrote {out_dir} (seed {SEED})")


if __name__ == "__main__":
    main()
