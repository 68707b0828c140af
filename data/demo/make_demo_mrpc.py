"""Build the embedded demo paraphrase dataset in GLUE MRPC layout (sentence pairs, binary).

``mrpc/train.tsv`` (1,200 pairs) and ``mrpc/dev.tsv`` (300 pairs), UTF-8, ``\\n`` line endings, with MRPC's
tab-separated header ``Quality #1 ID #2 ID #1 String #2 String`` behind a byte order mark, as the GLUE download
script copies it from Microsoft's file. ``Quality`` is 1 for a paraphrase; each distinct sentence has one numeric id.

The pairs come from the sentence model in ``demo_pairs.py``, about two thirds newswire and one third captions,
written MRPC style (punctuation split off: ``The firm cut 40 jobs last week .``). Two thirds are paraphrases, as in
real MRPC (68 %): the same frame realised twice (relation level 5) or once without its time or place (level 4).
The rest are the hard negatives MRPC was mined for, topically identical and often sharing most words: another
number, subject, object or agent (level 3), or another action or the opposite event (level 2); half of them also
lose a time or place, as level-4 pairs do, so a length difference is a weak cue (Pearson 0.19 with the label on
dev). Rows come in blocks of three (two paraphrases, one not, shuffled) so any head cut stays close to 2:1.

No pair (in either order) appears twice, within a split or across train and dev.

Run ``python data/demo/make_demo_mrpc.py [OUT_DIR]``; the output is byte-identical on every run.
"""

from __future__ import annotations

import random
import re
import sys
from pathlib import Path

from demo_pairs import Pair, draw_blocks, sentence_case

SEED = 2028
N_TRAIN = 1200
N_DEV = 300
NEWS_SHARE = 0.65
# Two paraphrases and one non-paraphrase per block; which levels fill them varies block by block.
POSITIVE_LEVELS, NEGATIVE_LEVELS = (5, 4), (3, 2)
# Negatives lose a time or place as often as level-4 paraphrases do, so a length difference tells nothing.
DROP_EXTRA = 0.5
HEADER = "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String"
OUT_DIR = Path(__file__).parent / "mrpc"


def newswire(text: str) -> str:
    """Sentence case with punctuation split off, as MRPC's strings are."""
    return re.sub(r"\s*([,.])", r" \1", sentence_case(text))


def draw(r: random.Random, rows: int, seen: set[tuple[str, str]]) -> list[Pair]:
    out: list[Pair] = []
    for _ in range(rows // 3):
        levels = (r.choice(POSITIVE_LEVELS), r.choice(POSITIVE_LEVELS), r.choice(NEGATIVE_LEVELS))
        out.extend(draw_blocks(r, 1, levels, NEWS_SHARE, newswire, seen, drop_extra=DROP_EXTRA))
    return out


def lines(rows: list[Pair], ids: dict[str, int], r: random.Random) -> list[str]:
    def sentence_id(text: str) -> int:
        if text not in ids:
            taken = set(ids.values())
            candidate = r.randrange(100_000, 4_000_000)
            while candidate in taken:
                candidate = r.randrange(100_000, 4_000_000)
            ids[text] = candidate
        return ids[text]

    out = [HEADER]
    for pair in rows:
        quality = int(pair.level in POSITIVE_LEVELS)
        out.append(f"{quality}\t{sentence_id(pair.first)}\t{sentence_id(pair.second)}\t{pair.first}\t{pair.second}")
    return out


def main() -> None:
    out_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else OUT_DIR
    r = random.Random(SEED)
    seen: set[tuple[str, str]] = set()
    ids: dict[str, int] = {}
    splits = {name: lines(draw(r, rows, seen), ids, r) for name, rows in (("train", N_TRAIN), ("dev", N_DEV))}
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, text in splits.items():
        (out_dir / f"{name}.tsv").write_bytes(("\n".join(text) + "\n").encode("utf-8"))
        positives = sum(line.startswith("1\t") for line in text[1:])
        print(f"{name}: {len(text) - 1} pairs, {positives} paraphrases")
    print(f"wrote {out_dir} (seed {SEED})")


if __name__ == "__main__":
    main()
