"""Build the embedded demo sentiment dataset in GLUE SST-2 layout.

The demo lets ``distilflow`` run end to end without a network, so it ships a small,
synthetic but realistic binary sentiment corpus: ``sst2/train.tsv`` (1,200 rows) and
``sst2/dev.tsv`` (300 rows), each exactly half positive (label 1) and half negative
(label 0), in the GLUE SST-2 file format (UTF-8, a ``sentence<TAB>label`` header, ``\\n``
line endings, sentences lower-cased and tokenised GLUE style: ``it 's not bad at all .``).

How the sentences are built
---------------------------
* Two domains, movie reviews and product reviews, each with hand-written lexicons:
  items (``this thriller``, ``my new air fryer``), aspects with their own positive and
  negative predicates (``the pacing is glacial``, ``the battery life is a joke``),
  gradable adjectives, noun-phrase verdicts, verb phrases, first-person reactions,
  comparison targets, sarcastic set-ups and so on.
* About sixty templates turn those into sentences. Most templates are *symmetric*: the
  same frame yields either label depending only on which lexicon fills the slots
  ("i expected to hate it , but ..." / "i expected to love it , but ..."), so the frame
  itself is no cue. The phenomena covered: 2-4 word verdicts, 25-45 word reviews,
  negation that flips polarity both ways ("never boring", "not funny at all",
  "i ca n't recommend it enough"), contrast where the ``but`` clause decides, sarcasm
  ("oh great , another two hours i 'll never get back"), intensifiers, hedges,
  comparisons, superlatives and rhetorical questions.
* Labels come from the template's polarity, which a human reader would give: in a
  contrast the clause after ``but`` or the main clause after ``although`` wins, and
  sarcasm is negative.
* Generation alternates labels, samples a template by weight, fills it with
  ``random.Random(2026)`` and keeps the sentence only if it is new (exact match after
  tokenisation). 750 sentences per label are drawn, then shuffled and cut into train
  and dev, so both splits come from one distribution and share no sentence.
* Rows are written in blocks of ten (five per label, in random order), so any head
  cut of the files (``data.max_train_rows``) stays close to balanced.

Run ``python data/demo/make_demo_sst2.py``; the output is byte-identical on every run.
"""

from __future__ import annotations

import random
import re
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

SEED = 2026
N_TRAIN = 1200
N_DEV = 300
OUT_DIR = Path(__file__).parent / "sst2"
POS, NEG = 1, 0

Lex = dict[str, tuple[str, ...]]


# --------------------------------------------------------------------------- model


@dataclass(frozen=True)
class Aspect:
    """Something a review can praise or fault, with predicates for each polarity."""

    name: str
    pos: tuple[str, ...]
    neg: tuple[str, ...]

    def pred(self, r: random.Random, pol: int) -> str:
        return r.choice(self.pos if pol == POS else self.neg)


@dataclass(frozen=True)
class Item:
    """A reviewed thing: its noun (``thriller``), plural and the aspects that fit it."""

    kind: str
    plural: str
    aspects: tuple[Aspect, ...]


@dataclass(frozen=True)
class Domain:
    """One review domain: items, determiners and polarity-keyed lexicons."""

    name: str
    items: tuple[Item, ...]
    determiners: tuple[str, ...]
    lex: Lex

    def pick(self, r: random.Random, key: str) -> str:
        return r.choice(self.lex[key])

    def polar(self, r: random.Random, key: str, pol: int) -> str:
        """Pick from ``pos_<key>`` or ``neg_<key>``."""
        return r.choice(self.lex[("pos_" if pol == POS else "neg_") + key])


@dataclass(frozen=True)
class Ctx:
    """Everything a template needs: the generator, a domain, an item and its phrase."""

    r: random.Random
    d: Domain
    item: Item
    it: str  # "this thriller", "my new blender"

    def p(self, key: str, pol: int) -> str:
        return self.d.polar(self.r, key, pol)

    def w(self, key: str) -> str:
        return self.d.pick(self.r, key)

    def aspects(self, n: int) -> list[Aspect]:
        return self.r.sample(self.item.aspects, n)

    def variable_aspect(self) -> Aspect:
        """An aspect that can change over time or vary ("at times")."""
        return self.r.choice([a for a in self.item.aspects if a.name not in FIXED_ASPECTS])

    def adj(self, pol: int, intensify: float = 0.0) -> str:
        word = self.p("adj", pol)
        if self.r.random() < intensify:
            return f"{self.r.choice(INTENSIFIERS)} {word}"
        return word

    def pred(self, pol: int) -> str:
        """An adjective (sometimes intensified) or a noun-phrase verdict."""
        if self.r.random() < 0.5:
            return self.adj(pol, intensify=0.4)
        return self.p("np", pol)


def article(word: str) -> str:
    return f"an {word}" if word[0] in "aeiou" else f"a {word}"


INTENSIFIERS = (
    "really",
    "truly",
    "absolutely",
    "incredibly",
    "remarkably",
    "genuinely",
    "thoroughly",
    "so",
    "extremely",
    "utterly",
    "seriously",
    "just",
)
HEDGES = ("pretty", "fairly", "rather", "quite", "mostly", "somewhat")
OPENERS = (
    "honestly , ",
    "overall , ",
    "in the end , ",
    "frankly , ",
    "i have to say , ",
    "all in all , ",
    "to be honest , ",
    "in short , ",
    "simply put , ",
    "for me , ",
    "oh , ",
)
FIXED_ASPECTS = ("the price", "the delivery", "customer service")
FAR = ("far", "much", "so much", "a lot", "miles", "way", "even")


def opener(r: random.Random, prob: float = 0.25) -> str:
    return r.choice(OPENERS) if r.random() < prob else ""


# --------------------------------------------------------------------------- movies


def _a(name: str, pos: str, neg: str) -> Aspect:
    return Aspect(name, tuple(pos.split("|")), tuple(neg.split("|")))


MOVIE_ASPECTS = (
    _a(
        "the acting",
        "natural and convincing|superb across the board|terrific|nuanced",
        "wooden|stiff and unconvincing|painfully hammy|flat",
    ),
    _a(
        "the script",
        "smart and witty|tight and clever|sharp|beautifully written",
        "a mess|lazy|full of cliches|clumsy and overwritten",
    ),
    _a(
        "the plot",
        "clever and full of surprises|gripping|tightly constructed",
        "predictable|full of holes|impossible to follow|paper thin",
    ),
    _a("the dialogue", "sharp|genuinely funny|crisp and natural", "clunky|painfully awkward|laughably bad"),
    _a("the pacing", "brisk|just right|perfectly judged", "sluggish|all over the place|glacial"),
    _a("the ending", "satisfying|genuinely moving|perfect", "rushed|a cheap cop-out|baffling"),
    _a("the soundtrack", "gorgeous|perfectly chosen|terrific", "grating|forgettable|intrusive"),
    _a("the cinematography", "stunning|beautiful|breathtaking", "murky|flat and ugly|dull"),
    _a("the cast", "great|wonderful|uniformly excellent", "wasted|badly miscast|stranded"),
    _a("the lead performance", "magnetic|a revelation|extraordinary", "flat|lifeless|one-note"),
    _a("the direction", "confident|assured|inventive", "clumsy|aimless|heavy-handed"),
    _a("the humor", "sharp and surprising|laugh-out-loud funny|clever", "juvenile|stale|painfully unfunny"),
    _a("the villain", "genuinely menacing|memorable|fascinating", "cartoonish|forgettable|toothless"),
    _a("the editing", "razor sharp|crisp|seamless", "choppy|sloppy|disorienting"),
    _a("the final act", "thrilling|a knockout|deeply satisfying", "a slog|a letdown|an incoherent mess"),
    _a("the chemistry between the leads", "electric|warm and believable|wonderful", "nonexistent|awkward|forced"),
    _a("the visual design", "dazzling|gorgeous|inventive", "drab|cheap looking|garish"),
    _a("the score", "soaring|haunting|lovely", "overbearing|generic|relentless"),
    _a("the world building", "rich and detailed|immersive|imaginative", "thin|confusing|lazy"),
)

MOVIE_KINDS = (
    ("movie", "movies"),
    ("film", "films"),
    ("sequel", "sequels"),
    ("thriller", "thrillers"),
    ("comedy", "comedies"),
    ("drama", "dramas"),
    ("documentary", "documentaries"),
    ("remake", "remakes"),
    ("horror movie", "horror movies"),
    ("animated feature", "animated features"),
    ("romantic comedy", "romantic comedies"),
    ("superhero movie", "superhero movies"),
    ("war film", "war films"),
    ("biopic", "biopics"),
    ("period drama", "period dramas"),
    ("heist movie", "heist movies"),
    ("sci-fi epic", "sci-fi epics"),
    ("musical", "musicals"),
    ("western", "westerns"),
    ("coming-of-age story", "coming-of-age stories"),
    ("mystery", "mysteries"),
    ("family film", "family films"),
    ("crime drama", "crime dramas"),
    ("spy thriller", "spy thrillers"),
)


def _t(text: str) -> tuple[str, ...]:
    return tuple(s.strip() for s in text.split("|"))


MOVIE_LEX: Lex = {
    "pos_adj": _t(
        "wonderful|brilliant|charming|gripping|moving|delightful|funny|heartfelt|smart|"
        "thrilling|touching|riveting|entertaining|beautiful|clever|powerful|engaging|"
        "enjoyable|witty|affecting|fresh|exciting|satisfying|well made|absorbing|"
        "compelling|warm|inventive|gorgeous|fun|great"
    ),
    "neg_adj": _t(
        "dull|tedious|boring|lifeless|predictable|forgettable|pointless|overlong|"
        "shallow|pretentious|clumsy|joyless|hollow|bland|lazy|messy|tiresome|"
        "incoherent|flat|silly|dreary|painful|annoying|stale|muddled|unfunny|sloppy|"
        "cynical|bloated|ugly"
    ),
    # negative words whose negation reads as praise ("never boring")
    "flip": _t("boring|dull|tedious|predictable|confusing|preachy|slow|cheesy|forgettable|tiresome|sappy|pretentious"),
    "pos_mild": _t(
        "enjoyable|entertaining|charming|funny|engaging|clever|fun|likeable|solid|"
        "effective|pleasant|sweet|absorbing|good|decent"
    ),
    "neg_mild": _t(
        "dull|tedious|predictable|forgettable|bland|messy|silly|flat|uneven|overlong|stale|muddled|slow|thin|weak"
    ),
    "pos_np": _t(
        "a joy to watch|a real crowd pleaser|an absolute triumph|a small masterpiece|"
        "worth every minute|a must see|one of the best films of the year|"
        "a breath of fresh air|a genuine treat|an instant classic|a rare gem|"
        "a wonderful surprise|pure entertainment|a total blast|a delight from start to finish|"
        "the best two hours i've spent in a theater all year"
    ),
    "neg_np": _t(
        "painful to sit through|a total mess|a chore to watch|a colossal bore|"
        "an insult to the audience|a waste of time|a huge disappointment|"
        "one of the worst films of the year|a complete misfire|a tired retread|a slog|"
        "a mess from start to finish|an endurance test|a real letdown|a lazy cash grab"
    ),
    "pos_vp": _t(
        "kept me hooked throughout|made me laugh out loud more than once|"
        "left me grinning for days|had the whole theater cheering|"
        "stayed with me long after the credits rolled|moved me to tears|never lets up|"
        "earns every one of its big moments|pulls off something genuinely special|"
        "gets better every time i watch it|sticks the landing|"
        "grabs you from the opening scene|surprised me at every turn|"
        "made me fall in love with the movies all over again"
    ),
    "neg_vp": _t(
        "put me to sleep|drags on forever|falls apart in the second half|"
        "wastes a great cast|made me check my watch every ten minutes|"
        "never figures out what it wants to be|runs out of ideas in the first twenty minutes|"
        "insults the intelligence of its audience|squanders a promising premise|"
        "left me completely cold|goes absolutely nowhere|feels twice as long as it is|"
        "collapses under its own weight|confuses loud with exciting"
    ),
    "pos_turn": _t(
        "finds its heart|becomes something genuinely special|"
        "pulls everything together beautifully|earns every one of its big moments|"
        "wins you over completely|turns into a real thrill ride"
    ),
    "neg_turn": _t(
        "falls apart|loses its way completely|runs out of steam|"
        "collapses under its own weight|turns into a tedious slog|"
        "forgets everything that made it work"
    ),
    "pos_react": _t(
        "i loved every minute of it|i would happily watch it again|"
        "i can't recommend it enough|i was hooked from the first scene|"
        "i left the theater smiling|i was grinning the whole way through|"
        "i've already seen it twice|i can't wait to see it again|i was moved to tears|"
        "i was completely won over|i'm still thinking about it days later|"
        "i never wanted it to end"
    ),
    "neg_react": _t(
        "i want those two hours back|i walked out halfway through|"
        "i was bored out of my mind|i couldn't wait for it to end|i fell asleep twice|"
        "i wouldn't recommend it to anyone|i regret paying for a ticket|"
        "i kept checking my phone|i've already forgotten most of it|i felt nothing at all|"
        "i ended up counting the exit signs"
    ),
    "pos_state": _t(
        "grinning|thoroughly charmed|completely won over|a new fan of the director|"
        "with a huge smile on my face|genuinely moved"
    ),
    "neg_state": _t(
        "bored out of my mind|completely disappointed|wishing i had stayed home|"
        "half asleep|with a headache|checking my watch every five minutes"
    ),
    "ref_np": _t(
        "the original|the first one|the book|its predecessor|the director's last film|"
        "last year's version|most of what is in theaters right now|anything else out this year"
    ),
    "ref_clause": _t("i expected|the trailer promised|the hype suggested|i had hoped"),
    "bad_ref": _t("the reviews suggest|people say|the trailer made it look|i feared"),
    "low_expect": _t("a forgettable time killer|another tired cash grab|nothing special|the usual cliches|to be bored"),
    "high_expect": _t(
        "something special|the best film of the year|a modern classic|a smart , thrilling ride|to be blown away"
    ),
    "duration": _t("two hours|ninety minutes|three hours|an entire evening|a whole afternoon"),
    "good_things": _t(
        "clever twists and sharp dialogue|big laughs and real heart|"
        "edge-of-your-seat suspense|gorgeous visuals and a great score|smart , grown-up drama|"
        "old-fashioned storytelling"
    ),
    "bad_activity": _t(
        "watching paint dry|staring at a blank wall for two hours|"
        "being lectured for two hours|hearing the same joke ten times|"
        "predicting every twist an hour in advance"
    ),
    "pos_nouns": _t(
        "gorgeous visuals|star power|huge budget|clever premise|impressive effects|talented cast|stylish look"
    ),
    "neg_nouns": _t("flaws|rough edges|slow start|clunky dialogue|modest budget|odd detours|uneven pacing"),
    "big_assets": _t(
        "a huge star|a great cast|a celebrated director|a clever premise|stunning effects|an award-winning writer"
    ),
    "small_assets": _t(
        "a cast of unknowns|a tiny crew|a first-time director|a simple premise|a single location|no famous faces"
    ),
    "budget_big": _t("a budget this big|all that money behind it|a marketing campaign this loud"),
    "budget_small": _t("almost no budget|a shoestring budget|barely any money behind it"),
    "pos_consequence": _t(
        "i've already seen it twice|the whole theater applauded at the end|"
        "i'm still thinking about it a week later|i bought the soundtrack on the way home"
    ),
    "neg_consequence": _t(
        "half the audience left early|i've already forgotten most of it|"
        "i fell asleep twice|nobody in my row laughed once"
    ),
    "desire": _t(
        "a smart thriller|a good laugh|a film with real heart|"
        "something the whole family can enjoy|an old-fashioned adventure|a date night movie"
    ),
    "basic": _t("makes sense|has a plot|respects its audience|knows when to end|has at least one likeable character"),
    "rough": _t("rough patches|slow stretches|clunky lines|flaws|dead spots"),
    "good_bits": _t("good moments|funny lines|nice touches|strong scenes|bright spots"),
    "time": _t("hour|twenty minutes|half hour|forty minutes|act"),
    "extra_pos": _t("full of promise|genuinely intriguing|easy to like|a lot of fun"),
    "extra_neg": _t("a little too pleased with itself|oddly stiff|hard to warm to|weirdly lifeless"),
    "connector": _t(
        "once the plot kicks in|somewhere around the midpoint|as the story unfolds|"
        "once the twists start coming|by the second act"
    ),
    "pos_finale": _t(
        "is genuinely thrilling|lands every punch|is as good as anything i've seen this year|"
        "had the whole theater cheering"
    ),
    "neg_finale": _t("is a complete mess|drags on forever|collapses into noise|falls completely flat"),
    "mistake": _t(
        "noise for excitement|volume for emotion|cynicism for wit|length for depth|"
        "explosions for a plot|shouting for acting"
    ),
    "pos_moment": _t(
        "the final twist , which i never saw coming|every single scene with the villain|"
        "the ending , which had the whole theater cheering|"
        "the quiet moments between the two leads|the opening chase , which is pure cinema"
    ),
    "neg_moment": _t(
        "when the credits finally rolled|realizing there were still forty minutes left|"
        "the nap i took halfway through|leaving early|the popcorn"
    ),
    "pos_benefit": _t(
        "i've fallen in love with the genre all over again|"
        "i finally understand what all the fuss is about|my faith in sequels is restored"
    ),
    "neg_benefit": _t(
        "i now read the reviews before buying a ticket|i've lost two hours of my life|i no longer trust that director"
    ),
    "weak_moment": _t("dull moment|wasted scene|false note|boring stretch"),
    "strong_moment": _t("memorable scene|genuine laugh|surprising moment|believable character"),
}

MOVIE_EXTRA = {
    "seen": "seen",
    "consume": "watch",
    "consuming": "watching",
    "made": "get made",
    "check": "read the script before filming|watch this before releasing it",
    "timeframe": "this year|in years|in a long time|in ages|all decade",
    "qual_neg": "on a plane|at a student festival|in film school|on late night tv",
    "qual_pos": "at any budget|in my life|in a very long time",
    "bravo_pos": "bravo to everyone involved|bravo to the whole cast and crew",
    "bravo_neg": (
        "bravo to the editor for making ninety minutes feel like four hours|"
        "bravo to the director for making two hours feel like an eternity|"
        "bravo to everyone involved for turning a great book into a nap"
    ),
    "thanks_neg": (
        "for the best nap i've had in months|for teaching me the true meaning of boredom|"
        "for the two hours i will never get back"
    ),
    "pos_ten": "would watch again|would happily watch again tomorrow",
    "neg_ten": "would fall asleep again|would check my watch again",
    "oh_great": "two hours i'll never get back|evening wasted on a sequel nobody asked for",
    "what_a": "what a masterpiece|what a treat|what a ride|what a film",
    "saturday": "which is exactly how i wanted to spend my saturday night",
}


def _movie_items() -> tuple[Item, ...]:
    return tuple(Item(k, p, MOVIE_ASPECTS) for k, p in MOVIE_KINDS)


# --------------------------------------------------------------------------- products

PA = {
    "battery": _a("the battery life", "excellent|better than advertised|outstanding", "terrible|a joke|pathetic"),
    "build": _a("the build quality", "solid|excellent|rock solid", "flimsy|cheap|shoddy"),
    "setup": _a("the setup", "quick and painless|a breeze|effortless", "a nightmare|confusing|a total headache"),
    "service": _a(
        "customer service", "friendly and fast|genuinely helpful|excellent", "useless|impossible to reach|rude"
    ),
    "design": _a("the design", "sleek|elegant|clever", "clunky|awkward|ugly"),
    "price": _a("the price", "very fair|a steal|more than reasonable", "way too high|hard to justify|absurd"),
    "app": _a("the companion app", "simple and reliable|well designed|intuitive", "buggy|a constant headache|useless"),
    "delivery": _a("the delivery", "fast|lightning quick", "painfully slow|a joke"),
    "manual": _a(
        "the instruction manual", "clear|easy to follow|helpful", "useless|impossible to follow|badly translated"
    ),
    "noise": _a("the noise level", "pleasantly low|barely noticeable", "unbearable|ridiculous|painfully loud"),
    "cleanup": _a("the cleanup", "quick and easy|simple", "a pain|a chore"),
    "motor": _a("the motor", "powerful|strong and quiet", "weak|underpowered"),
    "suction": _a("the suction", "incredibly strong|excellent", "weak|pathetic"),
    "coffee": _a("the coffee it makes", "rich and delicious|excellent", "bitter|lukewarm and weak"),
    "results": _a("the cooking", "consistently great|crispy and even", "uneven|soggy"),
    "toasting": _a("the toasting", "perfectly even|consistent", "uneven|patchy"),
    "screen": _a("the screen", "bright and sharp|gorgeous|crisp", "dim|washed out|grainy"),
    "sound": _a("the sound", "rich and clear|surprisingly full|excellent", "tinny|muddy|distorted"),
    "phone_camera": _a("the camera", "superb|excellent in low light", "blurry|disappointing"),
    "keys": _a("the keyboard", "comfortable|a pleasure to type on", "mushy|cramped"),
    "mic": _a("the microphone", "crystal clear|excellent", "muffled|useless"),
    "image": _a("the image quality", "stunning|superb", "soft and noisy|disappointing"),
    "autofocus": _a("the autofocus", "fast and accurate|lightning quick", "slow|unreliable"),
    "range": _a("the wifi range", "excellent|impressive", "weak|pathetic"),
    "connection": _a("the connection", "rock solid|stable", "spotty|unreliable"),
    "tracking": _a("the fitness tracking", "accurate|spot on", "wildly inaccurate|unreliable"),
    "typing": _a("the typing feel", "crisp and satisfying|wonderful", "mushy|cheap"),
    "print": _a("the print quality", "sharp|excellent", "streaky|faded"),
    "ink": _a("the cost of ink", "reasonable|surprisingly low", "outrageous|a scam"),
    "picture": _a("the picture", "sharp and vivid|stunning", "washed out|dull"),
    "stand": _a("the stand", "sturdy|adjustable and sturdy", "wobbly|flimsy"),
    "fabric": _a("the fabric", "soft and durable|high quality", "thin and scratchy|cheap"),
    "zipper": _a("the zipper", "smooth and sturdy|solid", "flimsy|a constant problem"),
    "padding": _a("the padding", "thick and comfortable|plush", "thin|hard as a rock"),
    "waterproofing": _a("the waterproofing", "excellent|flawless", "useless|a joke"),
    "support": _a("the support", "excellent|just right", "nonexistent|poor"),
    "assembly": _a("the assembly", "quick and simple|a breeze", "a nightmare|a two hour ordeal"),
    "light": _a("the light", "warm and bright|perfect", "harsh|too dim"),
    "handle": _a("the handle", "smooth and sturdy|solid", "wobbly|flimsy"),
}

_ELEC = ("build", "setup", "service", "design", "price", "delivery")
_APPL = ("build", "setup", "service", "design", "price", "delivery", "manual")
_HOME = ("build", "service", "design", "price", "delivery")
PRODUCT_KINDS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("phone", "phones", (*_ELEC, "battery", "screen", "phone_camera")),
    ("laptop", "laptops", (*_ELEC, "battery", "screen", "keys")),
    ("tablet", "tablets", (*_ELEC, "battery", "screen")),
    ("bluetooth speaker", "bluetooth speakers", (*_ELEC, "battery", "sound", "app")),
    ("headset", "headsets", (*_ELEC, "battery", "sound", "mic", "app")),
    ("camera", "cameras", (*_ELEC, "battery", "image", "autofocus", "app")),
    ("router", "routers", (*_ELEC, "range", "connection", "app")),
    ("smartwatch", "smartwatches", (*_ELEC, "battery", "screen", "tracking", "app")),
    ("keyboard", "keyboards", (*_ELEC, "typing", "connection")),
    ("printer", "printers", (*_ELEC, "print", "ink", "app")),
    ("e-reader", "e-readers", (*_ELEC, "battery", "screen")),
    ("monitor", "monitors", (*_ELEC, "picture", "stand")),
    ("blender", "blenders", (*_APPL, "motor", "noise", "cleanup")),
    ("cordless vacuum", "cordless vacuums", (*_APPL, "suction", "battery", "noise")),
    ("coffee maker", "coffee makers", (*_APPL, "coffee", "noise", "cleanup")),
    ("air fryer", "air fryers", (*_APPL, "results", "noise", "cleanup")),
    ("electric kettle", "electric kettles", (*_APPL, "noise")),
    ("toaster", "toasters", (*_APPL, "toasting", "cleanup")),
    ("stand mixer", "stand mixers", (*_APPL, "motor", "noise", "cleanup")),
    ("backpack", "backpacks", (*_HOME, "fabric", "zipper", "padding")),
    ("rain jacket", "rain jackets", (*_HOME, "fabric", "zipper", "waterproofing")),
    ("mattress", "mattresses", (*_HOME, "support", "fabric")),
    ("office chair", "office chairs", (*_HOME, "padding", "assembly")),
    ("desk lamp", "desk lamps", (*_HOME, "light", "assembly")),
    ("suitcase", "suitcases", (*_HOME, "handle", "zipper", "fabric")),
    ("tent", "tents", (*_HOME, "waterproofing", "assembly", "fabric")),
)

PRODUCT_LEX: Lex = {
    "pos_adj": _t(
        "excellent|fantastic|reliable|sturdy|great|impressive|solid|superb|handy|durable|"
        "convenient|practical|well made|well designed|easy to use|dependable|terrific|"
        "lovely|useful|brilliant|wonderful|good"
    ),
    "neg_adj": _t(
        "flimsy|useless|unreliable|overpriced|disappointing|frustrating|poorly made|cheap|"
        "awful|terrible|fragile|clunky|annoying|shoddy|defective|poorly designed|"
        "hard to use|worthless|mediocre|bad|dreadful"
    ),
    "flip": _t(
        "flimsy|complicated|fiddly|fragile|overpriced|hard to use|difficult to set up|bulky|cheap looking|disappointing"
    ),
    "pos_mild": _t("good|solid|reliable|sturdy|handy|useful|practical|decent|convenient|well made|easy to use|nice"),
    "neg_mild": _t(
        "flimsy|clunky|disappointing|fiddly|unreliable|awkward|overpriced|cheap|mediocre|"
        "frustrating|annoying|poorly made"
    ),
    "pos_np": _t(
        "a great buy|worth every penny|a joy to use|built to last|perfect for the price|"
        "exactly what i needed|a real bargain|a pleasure to use|great value for money|"
        "the best purchase i've made all year|a must have|a game changer|money well spent"
    ),
    "neg_np": _t(
        "a waste of money|junk|a huge disappointment|a nightmare to use|"
        "not worth the money|a total rip-off|the worst purchase i've made all year|"
        "a complete lemon|money down the drain|a disaster|a piece of junk|"
        "a constant headache|overpriced junk"
    ),
    "pos_vp": _t(
        "works exactly as advertised|has held up perfectly after months of daily use|"
        "does everything i need|made my life so much easier|arrived early and works great|"
        "has been completely trouble free|paid for itself within a month|"
        "exceeded all my expectations|still works like new after a year|"
        "does the job quietly and well|hasn't given me a single problem|"
        "feels far more expensive than it is|has survived two years of daily use|"
        "never misses a beat"
    ),
    "neg_vp": _t(
        "broke after a week|stopped working within a month|died on the second day|"
        "arrived damaged|never worked properly|fell apart after a few uses|"
        "constantly needs to be reset|is already showing wear after two weeks|"
        "doesn't do half of what the box promises|gave out right after the warranty expired|"
        "has been nothing but trouble|failed the first time i really needed it"
    ),
    "pos_turn": _t(
        "has won me over completely|has proven totally reliable|"
        "has become something i use every day|has been completely trouble free|"
        "has worked flawlessly"
    ),
    "neg_turn": _t(
        "has stopped working twice|has started falling apart|has been a constant headache|"
        "has gotten worse every day|has needed three repairs"
    ),
    "pos_react": _t(
        "i'm so glad i bought it|i've already ordered a second one|"
        "i'd buy it again in a heartbeat|i use it every single day|"
        "i recommend it to everyone i know|i couldn't be happier|i have zero regrets|"
        "i've told all my friends about it|i can't recommend it enough"
    ),
    "neg_react": _t(
        "i want my money back|i regret buying it|i returned it the next day|"
        "i'll never buy from this brand again|i wouldn't recommend it to anyone|"
        "i'm still waiting on a refund|i wish i had read the reviews first|"
        "it's going straight in the trash|i'm so annoyed i bought it"
    ),
    "pos_state": _t("thoroughly impressed|a loyal customer|totally sold|delighted|happier than i expected"),
    "neg_state": _t(
        "completely fed up|ready to throw it out|out of patience|regretting every penny|shopping for a replacement"
    ),
    "ref_np": _t(
        "my old one|the previous model|the brand name version|the one it replaced|"
        "models twice the price|anything else in this price range"
    ),
    "ref_clause": _t("i expected|the ads promised|i had hoped|the reviews suggested"),
    "bad_ref": _t("the reviews suggest|people say|i feared|the one-star reviews claim"),
    "low_expect": _t("cheap junk|something that would break in a week|nothing special|a gimmick"),
    "high_expect": _t("a premium product|something built to last|the best on the market|a real upgrade"),
    "duration": _t("three weeks|two months|a month|six months|a year"),
    "good_things": _t(
        "things that just work|solid , no-frills gear|good value|thoughtful design|gear that lasts for years"
    ),
    "bad_activity": _t(
        "throwing money away|waiting on hold for hours|reading error messages|"
        "resetting things every morning|returning things"
    ),
    "pos_nouns": _t("fancy features|sleek design|impressive specs|big brand name|premium price tag|glowing reviews"),
    "neg_nouns": _t("quirks|plain looks|steep learning curve|odd design choices|rough edges|bland packaging"),
    "big_assets": _t("a big brand name|a premium look|a long list of features|glowing reviews|a fancy box"),
    "small_assets": _t("a no-name brand|a plain design|a bare-bones feature list|zero marketing|a flimsy box"),
    "budget_big": _t("a price tag this high|a price this steep"),
    "budget_small": _t("a price this low|a bargain-bin price tag"),
    "pos_consequence": _t(
        "i've already bought one for my sister|it outperforms models that cost three times as much|"
        "i use it every single day|i've stopped looking at other brands"
    ),
    "neg_consequence": _t(
        "it broke within a week|i returned it the next day|"
        "it can't do the one thing it's supposed to do|i'm back to using my old one"
    ),
    "desire": _t(
        "something reliable|a good budget option|a gift that will actually get used|"
        "something built to last|an easy upgrade"
    ),
    "basic": _t(
        "actually works|lasts more than a week|does what the box says|comes with all its parts|survives normal use"
    ),
    "rough": _t("quirks|rough edges|minor flaws|annoyances|small issues"),
    "good_bits": _t("nice touches|clever features|good ideas|nice details|bright spots"),
    "time": _t("week|month|fortnight|day"),
    "extra_pos": _t("full of promise|a real step up|easy to like|a pleasure to use"),
    "extra_neg": _t("a little confusing|awkward to handle|hard to get used to|fiddly"),
    "connector": _t("after a few days|over time|after a while|as the weeks went by|before long"),
    "first_pos": _t("great|wonderful|fine|promising|a delight"),
    "first_neg": _t("frustrating|rough|confusing|a struggle|annoying"),
    "mistake": _t(
        "a shiny finish for quality|a long feature list for usefulness|"
        "a high price for premium quality|blinking lights for innovation"
    ),
    "pos_moment": _t(
        "how quiet it is|how little space it takes up|how fast it was ready to go|"
        "how well it has held up|the thoughtful little details"
    ),
    "neg_moment": _t(
        "the day the return window closed and it died|waiting three weeks for a replacement|"
        "calling customer service for the fifth time|the smell of burning plastic"
    ),
    "pos_benefit": _t(
        "my mornings are so much easier|i save hours every week|i finally have one less thing to worry about"
    ),
    "neg_benefit": _t(
        "i now read the reviews before buying anything|i've wasted an entire weekend|"
        "i know far more about return policies than i ever wanted to"
    ),
    "weak_moment": _t("thing i would change|single flaw|real weakness"),
    "strong_moment": _t("thing i like|redeeming feature|part that works properly"),
}

PRODUCT_EXTRA = {
    "seen": "owned",
    "consume": "buy",
    "consuming": "buying",
    "made": "pass quality control",
    "check": "test this before selling it|try using this even once",
    "timeframe": "this year|in years|in a long time|in ages",
    "qual_neg": "at the dollar store|for half the price|in a cereal box",
    "qual_pos": "at any price|in my life|for the money",
    "bravo_pos": "bravo to the designers|bravo to whoever designed this",
    "bravo_neg": (
        "bravo to whoever designed this for making a simple job take twice as long|"
        "bravo to the designers for making everyday use feel like a chore|"
        "bravo to the company for turning a basic product into a puzzle"
    ),
    "thanks_neg": (
        "for teaching me the value of a good warranty|for the free lesson in patience|for a whole weekend spent on hold"
    ),
    "pos_ten": "would buy again|would happily buy again tomorrow",
    "neg_ten": "would throw money away again|would wait on hold for three hours again",
    "oh_great": "",
    "what_a": "what a bargain|what a treat|what a purchase|what a find",
    "saturday": "which is exactly what i was hoping for when i ordered it",
}


def _with_extra(lex: Lex, extra: dict[str, str]) -> Lex:
    merged = dict(lex)
    for key, value in extra.items():
        merged[key] = _t(value) if value else ()
    return merged


DOMAINS = (
    Domain("movie", _movie_items(), ("this", "this", "this", "the new"), _with_extra(MOVIE_LEX, MOVIE_EXTRA)),
    Domain(
        "product",
        tuple(Item(k, p, tuple(PA[key] for key in keys)) for k, p, keys in PRODUCT_KINDS),
        ("this", "this", "this", "my new", "the"),
        _with_extra(PRODUCT_LEX, PRODUCT_EXTRA),
    ),
)
MOVIE, PRODUCT = DOMAINS

SHORT = {
    POS: _t(
        "a total delight .|pure joy .|simply wonderful .|loved it .|highly recommended .|"
        "worth every penny .|an absolute gem .|a must see .|five stars .|"
        "works like a charm .|never boring .|not bad at all .|a real treat .|"
        "funny and touching .|no complaints whatsoever .|better than expected .|"
        "an instant classic .|great value .|exceeded my expectations .|"
        "charming throughout .|beautifully made .|a knockout .|absolutely loved it .|"
        "see it twice .|totally worth it .|i was hooked .|a quiet triumph .|"
        "sturdy and reliable .|money well spent .|wow . just wow .|could n't be happier .|"
        "not disappointed at all .|five stars without hesitation .|buy it .|"
        "i loved it .|what a ride !|a winner .|not a dull moment .|ca n't fault it ."
    ),
    NEG: _t(
        "a total mess .|utterly forgettable .|avoid at all costs .|what a waste .|"
        "a colossal bore .|one star .|dead on arrival .|not worth it .|a real letdown .|"
        "painfully dull .|never again .|broke immediately .|cheap and flimsy .|"
        "dull , dull , dull .|a complete disaster .|not good .|i want a refund .|"
        "worse than expected .|an instant regret .|pure garbage .|total junk .|"
        "money down the drain .|skip this one .|a tedious slog .|falls flat .|"
        "i was bored .|a hollow exercise .|nothing works .|zero stars .|stay away .|"
        "wow . just awful .|could n't be worse .|not impressed at all .|"
        "zero stars if i could .|do n't buy it .|i hated it .|what a mess !|a loser .|"
        "not a single laugh .|ca n't recommend it ."
    ),
}

# --------------------------------------------------------------------------- templates

Template = Callable[[Ctx, int], str]


@dataclass(frozen=True)
class Spec:
    fn: Template
    weight: float
    pols: tuple[int, ...]
    domains: tuple[str, ...]


TEMPLATES: list[Spec] = []


def template(
    weight: float = 1.0,
    pols: tuple[int, ...] = (POS, NEG),
    domains: tuple[str, ...] = ("movie", "product"),
) -> Callable[[Template], Template]:
    def register(fn: Template) -> Template:
        TEMPLATES.append(Spec(fn, weight, pols, domains))
        return fn

    return register


def other(pol: int) -> int:
    return NEG if pol == POS else POS


# -- short (2-4 words) ------------------------------------------------------------


@template(weight=2.0)
def short_fixed(c: Ctx, pol: int) -> str:
    return c.r.choice(SHORT[pol])


@template()
def short_intensified(c: Ctx, pol: int) -> str:
    return f"{c.r.choice(INTENSIFIERS)} {c.adj(pol)} ."


@template()
def short_two_adjectives(c: Ctx, pol: int) -> str:
    first, second = c.r.sample(c.d.lex["pos_adj" if pol == POS else "neg_adj"], 2)
    return f"{first} and {second} ."


@template(weight=0.7)
def short_verdict(c: Ctx, pol: int) -> str:
    return f"{c.p('np', pol)} ."


@template()
def short_negated(c: Ctx, pol: int) -> str:
    word = c.w("flip") if pol == POS else c.p("adj", POS)
    frame = c.r.choice(("never {} .", "hardly {} .", "not remotely {} .", "not {} at all ."))
    return frame.format(word)


# -- plain verdicts -------------------------------------------------------------------


@template(weight=1.2)
def plain_adjective(c: Ctx, pol: int) -> str:
    return f"{opener(c.r)}{c.it} is {c.adj(pol, intensify=0.6)} ."


@template()
def plain_verdict(c: Ctx, pol: int) -> str:
    return f"{opener(c.r)}{c.it} is {c.p('np', pol)} ."


@template(weight=1.2)
def plain_verb_phrase(c: Ctx, pol: int) -> str:
    return f"{opener(c.r)}{c.it} {c.p('vp', pol)} ."


@template()
def reaction(c: Ctx, pol: int) -> str:
    if c.r.random() < 0.2:
        if pol == POS:
            return "i wanted to hate it , but it won me over ."
        return "i wanted to like it , but i just couldn't ."
    lead = c.r.choice(("", "", "honestly , ", "bottom line : ", "all i can say is "))
    return f"{lead}{c.p('react', pol)} ."


@template()
def so_that(c: Ctx, pol: int) -> str:
    return f"{c.it} is so {c.adj(pol)} that {c.p('react', pol)} ."


@template()
def wow(c: Ctx, pol: int) -> str:
    if c.r.random() < 0.5:
        return f"wow , {c.it} is {c.r.choice(INTENSIFIERS)} {c.adj(pol)} ."
    (asp,) = c.aspects(1)
    return f"wow , {asp.name} is {asp.pred(c.r, pol)} ."


@template()
def recommend(c: Ctx, pol: int) -> str:
    who = c.r.choice(("anyone", "everyone i know", "friends and family", "anyone who asks"))
    if c.r.random() < 0.5:
        verb = "i'd recommend" if pol == POS else "i wouldn't recommend"
        return f"{c.it} is {c.p('np', pol)} , and {verb} it to {who} ."
    if pol == POS:
        return f"highly recommended if you like {c.w('good_things')} ."
    return f"skip it unless you enjoy {c.w('bad_activity')} ."


# -- aspects --------------------------------------------------------------------------


@template(weight=1.2)
def aspect_pair(c: Ctx, pol: int) -> str:
    a, b = c.aspects(2)
    return f"{opener(c.r)}{a.name} is {a.pred(c.r, pol)} and {b.name} is {b.pred(c.r, pol)} ."


@template()
def aspect_triple(c: Ctx, pol: int) -> str:
    a, b, d = c.aspects(3)
    return f"{a.name} is {a.pred(c.r, pol)} , {b.name} is {b.pred(c.r, pol)} , and {d.name} is {d.pred(c.r, pol)} ."


@template()
def aspect_and_verdict(c: Ctx, pol: int) -> str:
    (a,) = c.aspects(1)
    return f"{a.name} is {a.pred(c.r, pol)} , and {c.it} {c.p('vp', pol)} ."


@template()
def did_i_mention(c: Ctx, pol: int) -> str:
    a, b = c.aspects(2)
    return f"{c.it} is {c.adj(pol)} . did i mention {a.name} is {a.pred(c.r, pol)} and {b.name} is {b.pred(c.r, pol)} ?"


# -- contrast -------------------------------------------------------------------------

TAILS = {
    POS: (
        "",
        "",
        " , and that more than makes up for it",
        " , and that's what really matters",
        " , so i still came away happy",
        " , which is what counts in the end",
    ),
    NEG: (
        "",
        "",
        " , and that sinks the whole thing",
        " , and that ruins it for me",
        " , so i can't recommend it",
        " , which is what counts in the end",
    ),
}


@template(weight=2.0)
def contrast_but(c: Ctx, pol: int) -> str:
    a, b = c.aspects(2)
    first = f"{a.name} is {a.pred(c.r, other(pol))}"
    return f"{first} , but {b.name} is {b.pred(c.r, pol)}{c.r.choice(TAILS[pol])} ."


@template(weight=1.5)
def contrast_although(c: Ctx, pol: int) -> str:
    (a,) = c.aspects(1)
    weak = f"{a.name} is {a.pred(c.r, other(pol))}"
    if c.r.random() < 0.5:
        return f"although {weak} , {c.it} is {c.adj(pol, intensify=0.4)} overall ."
    return f"{c.it} is {c.pred(pol)} , even though {weak} ."


@template()
def contrast_a_few(c: Ctx, pol: int) -> str:
    bits = c.w("rough") if pol == POS else c.w("good_bits")
    return f"{c.it} has a few {bits} , but overall it's {c.pred(pol)} ."


@template()
def contrast_for_all(c: Ctx, pol: int) -> str:
    nouns = c.w("neg_nouns") if pol == POS else c.w("pos_nouns")
    return f"for all its {nouns} , {c.it} is {c.pred(pol)} ."


@template()
def contrast_halves(c: Ctx, pol: int) -> str:
    if c.d is MOVIE:
        return f"the first half of {c.it} is {c.adj(other(pol))} , but the second half {c.p('turn', pol)} ."
    first = c.w("first_neg") if pol == POS else c.w("first_pos")
    span = c.w("time")
    return f"the first {span} with {c.it} was {first} , but since then it {c.p('turn', pol)} ."


@template()
def contrast_not_perfect(c: Ctx, pol: int) -> str:
    if pol == POS:
        flaw = c.r.choice(("perfect", "flawless", "groundbreaking", "for everyone"))
        return f"it's not {flaw} , but {c.it} is {c.r.choice(HEDGES)} {c.p('mild', POS)} ."
    flaw = c.r.choice(("terrible", "awful", "a disaster", "unbearable"))
    return f"it's not {flaw} , but {c.it} is {c.r.choice(HEDGES)} {c.p('mild', NEG)} and {c.p('react', NEG)} ."


@template()
def expectation(c: Ctx, pol: int) -> str:
    if pol == POS:
        verb = c.r.choice(("hate", "be bored by", "dislike", "roll my eyes at"))
    else:
        verb = c.r.choice(("love", "enjoy", "be blown away by", "like"))
    return f"i expected to {verb} {c.it} , but {c.p('react', pol)} ."


@template()
def went_in(c: Ctx, pol: int) -> str:
    level = c.r.choice(("low", "high"))
    start = f"i went in with {level} expectations" if c.d is MOVIE else f"i bought {c.it} with {level} expectations"
    roll = c.r.random()
    if roll < 0.5:
        end = "came out" if c.d is MOVIE else "ended up"
        return f"{start} and {end} {c.p('state', pol)} ."
    subject = c.it if c.d is MOVIE else "it"
    if pol == POS:
        verb = "still exceeded them" if level == "high" else "blew them away"
    else:
        verb = "still managed to disappoint" if level == "low" else "failed to meet them"
    return f"{start} , and {subject} {verb} ."


# -- negation -------------------------------------------------------------------------


@template(weight=2.0)
def negated_adjective(c: Ctx, pol: int) -> str:
    word = c.w("flip") if pol == POS else c.p("adj", POS)
    frames = [
        "{it} is not {w} at all .",
        "{it} is far from {w} .",
        "{it} is anything but {w} .",
        "{it} is not the least bit {w} .",
        "{it} isn't {w} in the slightest .",
    ]
    if c.d is MOVIE:
        frames += ["{it} is never {w} , not even for a second .", "{it} is never once {w} ."]
    return c.r.choice(frames).format(it=c.it, w=word)


NEGATION_PAIRS: tuple[tuple[str, str], ...] = (
    ("i can't recommend {it} enough .", "i can't recommend {it} to anyone ."),
    (
        "i couldn't find a single thing wrong with {it} .",
        "i couldn't find a single thing right with {it} .",
    ),
    (
        "i didn't expect much from {it} , but it {pos_vp} .",
        "i expected a lot from {it} , but it {neg_vp} .",
    ),
    ("i have no complaints about {it} whatsoever .", "i have nothing good to say about {it} ."),
    (
        "i never expected {it} to be this {pos_adj} .",
        "i never expected {it} to be this {neg_adj} .",
    ),
    ("you won't regret {consuming} {it} .", "you won't miss anything by skipping {it} ."),
    ("nothing about {it} disappointed me .", "nothing about {it} worked for me ."),
    (
        "there isn't a single {weak_moment} in {it} .",
        "there isn't a single {strong_moment} in {it} .",
    ),
    ("there is nothing {neg_adj} about {it} .", "there is nothing {pos_adj} about {it} ."),
    ("i didn't think i'd like {it} , but i do .", "i did not enjoy {it} one bit ."),
    ("i don't know how i lived without {it} .", "i don't know why i bothered with {it} ."),
    ("no one will be disappointed by {it} .", "no one should waste their money on {it} ."),
)


@template(weight=2.5)
def negated_first_person(c: Ctx, pol: int) -> str:
    frame = c.r.choice(NEGATION_PAIRS)[0 if pol == POS else 1]
    return frame.format(
        it=c.it,
        pos_vp=c.p("vp", POS),
        neg_vp=c.p("vp", NEG),
        pos_adj=c.p("adj", POS),
        neg_adj=c.p("adj", NEG),
        consuming=c.w("consuming"),
        weak_moment=c.w("weak_moment"),
        strong_moment=c.w("strong_moment"),
    )


# -- intensity and hedging ------------------------------------------------------------


@template()
def hedged(c: Ctx, pol: int) -> str:
    word = f"{c.r.choice(HEDGES)} {c.p('mild', pol)}"
    frame = c.r.choice(
        (
            "{it} is {w} , all things considered .",
            "all things considered , {it} is {w} .",
            "i'd say {it} is {w} .",
            "{it} turned out {w} .",
        )
    )
    return frame.format(it=c.it, w=word)


@template()
def intensified_aspect(c: Ctx, pol: int) -> str:
    (a,) = c.aspects(1)
    amp = c.r.choice(("easily", "by far", "hands down", "without question"))
    best = "best" if pol == POS else "worst"
    return f"{a.name} is {amp} the {best} thing about {c.it} : it's {a.pred(c.r, pol)} ."


# -- comparison -----------------------------------------------------------------------


@template(weight=1.5)
def compare_better(c: Ctx, pol: int) -> str:
    ref = c.w("ref_np") if c.r.random() < 0.6 else c.w("ref_clause")
    word = "better" if pol == POS else "worse"
    return f"{opener(c.r, 0.15)}{c.it} is {c.r.choice(FAR)} {word} than {ref} ."


@template(weight=1.5)
def compare_as_good(c: Ctx, pol: int) -> str:
    ref = c.w("ref_np") if c.r.random() < 0.5 else c.w("ref_clause")
    bad_ref = c.w("bad_ref")
    options = {
        POS: (
            f"{c.it} is every bit as good as {ref} .",
            f"{c.it} is not nearly as bad as {bad_ref} .",
        ),
        NEG: (
            f"{c.it} is not nearly as good as {ref} .",
            f"{c.it} is every bit as bad as {bad_ref} .",
        ),
    }
    return c.r.choice(options[pol])


@template()
def superlative(c: Ctx, pol: int) -> str:
    subject = c.r.choice(("it's", "this one is", "honestly , it's"))
    amp = c.r.choice(("easily", "by far", "hands down", "quite possibly"))
    best = "best" if pol == POS else "worst"
    return f"{subject} {amp} the {best} {c.item.kind} i've {c.w('seen')} {c.w('timeframe')} ."


@template()
def seen_better(c: Ctx, pol: int) -> str:
    if pol == POS:
        return f"i've never {c.w('seen')} a better {c.item.kind} {c.w('qual_pos')} ."
    return f"i've {c.w('seen')} better {c.item.plural} {c.w('qual_neg')} ."


@template()
def step(c: Ctx, pol: int) -> str:
    size = c.r.choice(("huge", "real", "big", "clear"))
    move = "step up" if pol == POS else "step down"
    return f"compared to {c.w('ref_np')} , {c.it} is a {size} {move} ."


# -- rhetorical questions -------------------------------------------------------------


@template()
def who_knew(c: Ctx, pol: int) -> str:
    return f"who knew {article(c.item.kind)} could be this {c.adj(pol)} ?"


@template()
def can_it_get(c: Ctx, pol: int) -> str:
    word = "better" if pol == POS else "worse"
    if c.r.random() < 0.5:
        return f"can {c.it} get any {word} ?"
    return f"{c.it} {c.p('vp', pol)} . can it get any {word} ?"


@template(weight=1.5)
def rhetorical(c: Ctx, pol: int) -> str:
    if pol == POS:
        options = [
            f"why did i wait so long to {c.w('consume')} {c.it} ?",
            f"how is {c.it} not more popular ?",
            f"why is nobody talking about {c.it} ?",
            f"is there anything {c.it} doesn't do well ?",
            f"what more could you ask for from {article(c.item.kind)} ?",
            f"where has {c.it} been all my life ?",
        ]
    else:
        options = [
            f"why did i waste my money on {c.it} ?",
            f"how did {c.it} ever {c.w('made')} ?",
            f"why would anyone pay money for {c.it} ?",
            f"did anyone actually {c.w('check')} ?",
            f"is it too much to ask for {article(c.item.kind)} that {c.w('basic')} ?",
            "who thought this was a good idea ?",
            "what was the point of any of this ?",
        ]
    return c.r.choice(options)


# -- sarcasm and its sincere twins ---------------------------------------------------


@template(weight=0.7, pols=(NEG,))
def oh_great(c: Ctx, pol: int) -> str:
    choices = list(c.d.lex["oh_great"])
    choices.append(f"{c.item.kind} that {c.p('vp', NEG)}")
    return f"oh great , another {c.r.choice(choices)} ."


@template()
def oh_what(c: Ctx, pol: int) -> str:
    if pol == POS:
        nice = c.r.choice(("lovely", "wonderful", "pleasant", "welcome"))
        return f"oh , what a {nice} surprise {c.it} turned out to be ."
    return f"oh , what a surprise : {c.it} {c.p('vp', NEG)} ."


@template()
def just_what(c: Ctx, pol: int) -> str:
    if pol == POS:
        return f"just what i needed : {article(c.item.kind)} that {c.p('vp', POS)} ."
    return f"just what the world needed : another {c.item.kind} that {c.p('vp', NEG)} ."


@template()
def if_you_enjoy(c: Ctx, pol: int) -> str:
    if pol == NEG and c.r.random() < 0.5:
        return f"sure , {c.it} is {c.adj(POS)} , if you enjoy {c.w('bad_activity')} ."
    start = f"if you enjoy {c.w('good_things')} ,"
    if pol == POS:
        return f"{start} {c.it} is {c.p('np', POS)} ."
    return f"{start} look elsewhere , because {c.it} {c.p('vp', NEG)} ."


@template()
def thanks(c: Ctx, pol: int) -> str:
    roll = c.r.random()
    if pol == NEG and roll < 0.5:
        return f"i have {c.it} to thank {c.w('thanks_neg')} ."
    return f"thanks to {c.it} , {c.p('benefit', pol)} ."


@template()
def what_a(c: Ctx, pol: int) -> str:
    a, b = c.aspects(2)
    return f"{c.w('what_a')} : {a.name} is {a.pred(c.r, pol)} and {b.name} is {b.pred(c.r, pol)} ."


@template()
def ten_out_of_ten(c: Ctx, pol: int) -> str:
    return f"ten out of ten , {c.p('ten', pol)} ."


@template()
def favorite_part(c: Ctx, pol: int) -> str:
    tense = "was" if c.d is MOVIE or pol == NEG else "is"
    return f"my favorite part of {c.it} {tense} {c.p('moment', pol)} ."


@template()
def bravo(c: Ctx, pol: int) -> str:
    if pol == POS:
        return f"{c.w('bravo_pos')} , {c.it} is {c.p('np', POS)} ."
    return f"{c.w('bravo_neg')} ."


# -- long (roughly 25-45 words) -------------------------------------------------------


@template(weight=2.0)
def long_went_in(c: Ctx, pol: int) -> str:
    a, b = c.aspects(2)
    expect = c.w("low_expect") if pol == POS else c.w("high_expect")
    middle = f"it turned out to be {c.pred(pol)} : {a.name} is {a.pred(c.r, pol)} , {b.name} is {b.pred(c.r, pol)} ,"
    if c.d is MOVIE:
        return f"i went into {c.it} expecting {expect} , but {middle} and by the end i was {c.p('state', pol)} ."
    return f"i bought {c.it} expecting {expect} , but {middle} and after {c.w('duration')} i'm {c.p('state', pol)} ."


@template(weight=2.0)
def long_turnaround(c: Ctx, pol: int) -> str:
    a = c.variable_aspect()
    bad = other(pol)
    extra = c.w("extra_pos" if bad == POS else "extra_neg")
    if c.d is MOVIE:
        return (
            f"for the first {c.w('time')} {c.it} is {c.adj(bad)} and {extra} , "
            f"but {c.w('connector')} {a.name} becomes {a.pred(c.r, pol)} "
            f"and the final stretch {c.p('finale', pol)} ."
        )
    return (
        f"for the first {c.w('time')} , {c.it} felt {c.adj(bad)} and {extra} , "
        f"but {c.w('connector')} {a.name} turned out to be {a.pred(c.r, pol)} "
        f"and in the end it {c.p('turn', pol)} ."
    )


@template(weight=2.0)
def long_wanted(c: Ctx, pol: int) -> str:
    a, b, d = c.aspects(3)
    bad = other(pol)
    hope = "i really wanted to love" if pol == NEG else "i really wanted to hate"
    start = f"{hope} {c.it} because"
    later = c.r.choice(("eventually", "by the end", "as it goes on")) if c.d is MOVIE else f"after {c.w('duration')}"
    return (
        f"{start} {a.name} is {a.pred(c.r, bad)} and {b.name} is {b.pred(c.r, bad)} , "
        f"but {later} it {c.p('turn', pol)} and {d.name} is {d.pred(c.r, pol)} , "
        f"so {c.p('react', pol)} ."
    )


@template(weight=1.5)
def long_how_does(c: Ctx, pol: int) -> str:
    key = "big_assets" if pol == NEG else "small_assets"
    first, second = c.r.sample(c.d.lex[key], 2)
    money = c.w("budget_big") if pol == NEG else c.w("budget_small")
    return (
        f"how does {article(c.item.kind)} with {first} , {second} and {money} "
        f"end up so {c.adj(pol)} that {c.p('consequence', pol)} ?"
    )


@template(weight=2.0)
def long_not_quite(c: Ctx, pol: int) -> str:
    a = c.variable_aspect()
    if pol == POS:
        ref = c.w("ref_np") if c.r.random() < 0.5 else c.w("ref_clause")
        concession = f"it's not quite as {c.adj(POS)} as {ref}"
    else:
        concession = f"it's not quite as {c.adj(NEG)} as {c.w('bad_ref')}"
    return (
        f"{concession} , and {a.name} is {a.pred(c.r, other(pol))} at times , "
        f"but overall {c.it} is still {c.pred(pol)} and {c.p('react', pol)} ."
    )


@template(weight=2.0)
def long_if_looking(c: Ctx, pol: int) -> str:
    a, b = c.aspects(2)
    start = f"if you're looking for {c.w('desire')} ,"
    if c.r.random() < 0.5:
        return (
            f"{start} {c.it} is {c.pred(pol)} : {a.name} is {a.pred(c.r, pol)} , "
            f"{b.name} is {b.pred(c.r, pol)} , and {c.p('react', pol)} ."
        )
    advice = "stop looking" if pol == POS else "look elsewhere"
    return (
        f"{start} {advice} , because {c.it} {c.p('vp', pol)} , "
        f"{a.name} is {a.pred(c.r, pol)} , and {c.p('react', pol)} ."
    )


@template(weight=2.0)
def long_narrative(c: Ctx, pol: int) -> str:
    a, b = c.aspects(2)
    if c.d is MOVIE:
        when = c.r.choice(("twice now", "on opening night", "with my whole family"))
        start = f"having watched {c.it} {when} , i can honestly say it {c.p('vp', pol)}"
    else:
        usage = c.r.choice(("daily use", "using it every day", "heavy use"))
        start = f"after {c.w('duration')} of {usage} , i can honestly say {c.it} {c.p('turn', pol)}"
    return f"{start} ; {a.name} is {a.pred(c.r, pol)} , {b.name} is {b.pred(c.r, pol)} , and {c.p('react', pol)} ."


@template(weight=1.5)
def long_exactly_what_i_wanted(c: Ctx, pol: int) -> str:
    a, b = c.aspects(2)
    return (
        f"{a.name} is {a.pred(c.r, pol)} , {b.name} is {b.pred(c.r, pol)} , and "
        f"{c.it} {c.p('vp', pol)} , {c.w('saturday')} ."
    )


@template(weight=1.0, pols=(NEG,))
def long_sarcasm(c: Ctx, pol: int) -> str:
    a, b = c.aspects(2)
    return (
        f"oh great , another {c.item.kind} that mistakes {c.w('mistake')} , "
        f"where {a.name} is {a.pred(c.r, NEG)} , {b.name} is {b.pred(c.r, NEG)} , "
        f"and the whole thing {c.p('vp', NEG)} , {c.w('saturday')} ."
    )


@template(weight=1.5)
def long_every_so_often(c: Ctx, pol: int) -> str:
    a, b = c.aspects(2)
    verdict = "right" if pol == POS else "wrong"
    return (
        f"every so often {article(c.item.kind)} comes along that gets everything {verdict} , "
        f"and this is one of them : {a.name} is {a.pred(c.r, pol)} , "
        f"{b.name} is {b.pred(c.r, pol)} , and {c.p('react', pol)} ."
    )


# --------------------------------------------------------------------------- pipeline

_CONTRACTIONS = (
    (re.compile(r"\bcan't\b"), "ca n't"),
    (re.compile(r"\bwon't\b"), "wo n't"),
    (re.compile(r"(\w)n't\b"), r"\1 n't"),
    (re.compile(r"(\w)'(s|re|ve|ll|d|m)\b"), r"\1 '\2"),
    (re.compile(r"\s*([,.!?;:])\s*"), r" \1 "),
    (re.compile(r"\s+"), " "),
)


def tokenize(text: str) -> str:
    """Lower-case and split punctuation and clitics the way GLUE SST-2 does."""
    out = text.lower()
    for pattern, replacement in _CONTRACTIONS:
        out = pattern.sub(replacement, out)
    return out.strip()


def n_words(sentence: str) -> int:
    return sum(1 for token in sentence.split() if any(ch.isalnum() for ch in token))


def make_context(r: random.Random, domains: Sequence[str]) -> Ctx:
    name = r.choice(domains)
    domain = next(d for d in DOMAINS if d.name == name)
    item = r.choice(domain.items)
    return Ctx(r, domain, item, f"{r.choice(domain.determiners)} {item.kind}")


def generate(r: random.Random, per_label: int) -> dict[int, list[str]]:
    """Draw ``per_label`` distinct sentences per label, alternating labels."""
    pools: dict[int, list[Spec]] = {pol: [s for s in TEMPLATES if pol in s.pols] for pol in (POS, NEG)}
    seen: set[str] = set()
    out: dict[int, list[str]] = {POS: [], NEG: []}
    attempts = 0
    while len(out[POS]) < per_label or len(out[NEG]) < per_label:
        attempts += 1
        if attempts > 200 * per_label:
            raise RuntimeError("template space too small for the requested size")
        pol = POS if len(out[POS]) <= len(out[NEG]) else NEG
        pool = pools[pol]
        spec = r.choices(pool, weights=[s.weight for s in pool])[0]
        sentence = tokenize(spec.fn(make_context(r, spec.domains), pol))
        if sentence in seen:
            continue
        seen.add(sentence)
        out[pol].append(sentence)
    return out


def balanced_order(r: random.Random, pos: list[str], neg: list[str]) -> list[tuple[str, int]]:
    """Shuffle rows in blocks of ten, five of each label, so any prefix stays balanced."""
    assert len(pos) == len(neg) and len(pos) % 5 == 0
    rows: list[tuple[str, int]] = []
    for start in range(0, len(pos), 5):
        block = [(s, POS) for s in pos[start : start + 5]]
        block += [(s, NEG) for s in neg[start : start + 5]]
        r.shuffle(block)
        rows.extend(block)
    return rows


def check(rows: list[tuple[str, int]]) -> None:
    for sentence, label in rows:
        assert label in (POS, NEG)
        assert sentence and sentence == sentence.strip(), repr(sentence)
        assert "\t" not in sentence and "\n" not in sentence and "\r" not in sentence
    sentences = [s for s, _ in rows]
    assert len(set(sentences)) == len(sentences), "duplicate sentence within a split"


def write_tsv(path: Path, rows: list[tuple[str, int]]) -> None:
    lines = ["sentence\tlabel"] + [f"{s}\t{label}" for s, label in rows]
    path.write_bytes(("\n".join(lines) + "\n").encode("utf-8"))


def summarize(name: str, rows: list[tuple[str, int]]) -> str:
    lengths = sorted(n_words(s) for s, _ in rows)
    positives = sum(label for _, label in rows)
    long = sum(1 for n in lengths if n >= 25)
    short = sum(1 for n in lengths if n <= 4)
    return (
        f"{name}: {len(rows)} rows, {positives} positive / {len(rows) - positives} negative; "
        f"words min {lengths[0]} median {statistics.median(lengths):g} max {lengths[-1]}; "
        f"{short} rows <= 4 words, {long} rows >= 25 words"
    )


def main() -> None:
    r = random.Random(SEED)
    per_label = (N_TRAIN + N_DEV) // 2
    pools = generate(r, per_label)
    for pol in (POS, NEG):
        r.shuffle(pools[pol])
    n_train = N_TRAIN // 2
    train = balanced_order(r, pools[POS][:n_train], pools[NEG][:n_train])
    dev = balanced_order(r, pools[POS][n_train:], pools[NEG][n_train:])
    check(train)
    check(dev)
    leaked = {s for s, _ in train} & {s for s, _ in dev}
    assert not leaked, f"train/dev leakage: {sorted(leaked)[:3]}"
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    write_tsv(OUT_DIR / "train.tsv", train)
    write_tsv(OUT_DIR / "dev.tsv", dev)
    n_templates = len(TEMPLATES)
    print(f"wrote {OUT_DIR} from {n_templates} templates (seed {SEED})")
    print(summarize("train", train))
    print(summarize("dev", dev))


if __name__ == "__main__":
    main()
