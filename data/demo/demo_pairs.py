"""The sentence model behind the embedded pair demos (``make_demo_mrpc.py``, ``make_demo_stsb.py``).

A sentence is the surface form of a *frame*: what happened, who did it, to what, and optionally where or when.
Two genres, written like the STS-B sources they imitate:

* **captions** (MSRvid / image captions): ``A man is slicing an onion in a kitchen.`` Frames are an agent, one
  of ten activity groups (kitchen, music, ball games, riding, reading, gardening, ...), an action and an object
  of that group, and an optional place.
* **news** (headlines / MRPC newswire): ``The firm took on 40 additional employees last week.`` Frames are a
  subject, one of sixteen events (hiring, lay-offs, profit, loss, price rises, recalls, ...), a number and an
  optional time.

Every slot value has synonyms (``slicing``/``cutting``, ``the company``/``the firm``, ``40``/``forty``) and every
frame has several templates (active, passive, fronted place or time, reported speech), so two realisations of
one frame often share few words, while two different frames realised with one template share most of theirs:
word overlap alone cannot tell them apart, a model that knows the synonyms can.

A pair is two frames at a *relation level*, the STS-B annotation guideline's scale:

5. the same frame, realised independently (a paraphrase);
4. the same frame, one side without its place or time (equivalent, a detail missing);
3. one core slot changed: another number, object, agent or subject (roughly equivalent, important detail differs);
2. another action or the opposite event, same participants (not equivalent, same topic);
1. same genre, other participants and another activity (only the setting or the kind of event in common);
0. unrelated: the other genre.

Everything is drawn from an explicit ``random.Random``, so a writer seeded once is byte-for-byte deterministic.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, replace

Syn = tuple[str, ...]
"""Interchangeable surface forms of one meaning."""


def syns(text: str) -> tuple[Syn, ...]:
    """``"a man/a guy; a woman/a lady"`` → ``(("a man", "a guy"), ("a woman", "a lady"))``."""
    return tuple(tuple(form.strip() for form in entry.split("/")) for entry in text.split(";"))


@dataclass(frozen=True)
class Verb:
    """One action, as synonym forms of (progressive, third person, past participle)."""

    forms: tuple[tuple[str, str, str], ...]


def verbs(text: str) -> tuple[Verb, ...]:
    """``"slicing slices sliced/cutting cuts cut; ..."`` → one Verb per ``;`` entry."""
    out = []
    for entry in text.split(";"):
        forms = []
        for form in entry.split("/"):
            ing, third, participle = form.split()
            forms.append((ing.replace("_", " "), third.replace("_", " "), participle.replace("_", " ")))
        out.append(Verb(tuple(forms)))
    return tuple(out)


@dataclass(frozen=True)
class Group:
    """An activity: actions that fit every one of its objects, and places it happens in."""

    name: str
    actions: tuple[Verb, ...]
    objects: tuple[Syn, ...]
    places: tuple[Syn, ...]


PEOPLE = syns(
    "a man/a guy; a woman/a lady; a boy/a young boy; a girl/a young girl; a child/a kid; an old man/an elderly man;"
    "an old woman/an elderly woman; a teenager/a teen; a chef/a cook; a student/a young student; a soldier/a trooper;"
    "a police officer/a policeman; a musician/a performer; a man in a hat/a man wearing a hat;"
    "a woman in a red dress/a woman wearing a red dress; a little girl/a small girl"
)

GROUPS = (
    Group(
        "kitchen",
        verbs(
            "slicing slices sliced/cutting cuts cut; peeling peels peeled/skinning skins skinned;"
            "chopping chops chopped/dicing dices diced; washing washes washed/rinsing rinses rinsed;"
            "frying fries fried/cooking cooks cooked"
        ),
        syns(
            "an onion/a white onion; a tomato/a ripe tomato; a potato/a large potato; a carrot/an orange carrot;"
            "a cucumber/a green cucumber; some garlic/a garlic bulb; a piece of meat/a chunk of meat;"
            "some mushrooms/a few mushrooms"
        ),
        syns("in a kitchen/in the kitchen; at a counter/at the counter; on a cutting board/on a chopping board"),
    ),
    Group(
        "music",
        verbs(
            "playing plays played/strumming strums strummed; tuning tunes tuned/adjusting adjusts adjusted;"
            "cleaning cleans cleaned/wiping wipes wiped; carrying carries carried/holding holds held"
        ),
        syns("a guitar/an acoustic guitar; a banjo/a small banjo; a ukulele/a little ukulele; a harp/a tall harp"),
        syns("on a stage/on stage; in a park/at the park; on the street/on a street corner"),
    ),
    Group(
        "keys",
        verbs(
            "playing plays played/performing_on performs_on performed_on; cleaning cleans cleaned/dusting dusts dusted;"
            "moving moves moved/pushing pushes pushed"
        ),
        syns("a piano/a grand piano; a keyboard/an electric keyboard; an organ/a church organ"),
        syns("in a hall/in a concert hall; in a living room/at home; in a church/inside a church"),
    ),
    Group(
        "ball",
        verbs(
            "chasing chases chased/running_after runs_after run_after; catching catches caught/grabbing grabs grabbed;"
            "throwing throws thrown/tossing tosses tossed; kicking kicks kicked/booting boots booted"
        ),
        syns("a ball/a small ball; a frisbee/a flying disc; a stick/a wooden stick; a red ball/a bright red ball"),
        syns("in a yard/in the backyard; on a beach/on the beach; in a field/in a grassy field"),
    ),
    Group(
        "riding",
        verbs(
            "riding rides ridden/driving drives driven; washing washes washed/cleaning cleans cleaned;"
            "repairing repairs repaired/fixing fixes fixed; pushing pushes pushed/wheeling wheels wheeled"
        ),
        syns("a bicycle/a bike; a motorcycle/a motorbike; a scooter/a motor scooter; a tractor/a farm tractor"),
        syns("down a road/along a road; through a park/across a park; on a dirt track/on a dirt path"),
    ),
    Group(
        "reading",
        verbs(
            "reading reads read/looking_through looks_through looked_through; writing_in writes_in written_in/"
            "scribbling_in scribbles_in scribbled_in; carrying carries carried/holding holds held;"
            "opening opens opened/unfolding unfolds unfolded"
        ),
        syns(
            "a book/a novel; a newspaper/a paper; a letter/a handwritten letter; a notebook/a notepad; a map/a city map"
        ),
        syns("on a bench/on a park bench; in a library/at the library; at a desk/at a table"),
    ),
    Group(
        "garden",
        verbs(
            "watering waters watered/sprinkling sprinkles sprinkled; planting plants planted/putting_in puts_in put_in;"
            "trimming trims trimmed/pruning prunes pruned; digging_up digs_up dug_up/uprooting uproots uprooted"
        ),
        syns("some flowers/a few flowers; a small tree/a young tree; a rose bush/a rosebush; the plants/the greenery"),
        syns("in a garden/in the garden; outside a house/in front of a house; in a greenhouse/inside a greenhouse"),
    ),
    Group(
        "animals",
        verbs(
            "feeding feeds fed/giving_food_to gives_food_to given_food_to;"
            " petting pets petted/stroking strokes stroked;"
            "brushing brushes brushed/grooming grooms groomed; walking walks walked/leading leads led"
        ),
        syns("a dog/a puppy dog; a cat/a kitty; a horse/a pony; a goat/a young goat; a rabbit/a bunny"),
        syns("in a barn/inside a barn; on a farm/at a farm; in a backyard/in the yard"),
    ),
    Group(
        "dancing",
        verbs(
            "dancing_with dances_with danced_with/swaying_with sways_with swayed_with; talking_to talks_to talked_to/"
            "speaking_to speaks_to spoken_to; hugging hugs hugged/embracing embraces embraced"
        ),
        syns("a partner/a dance partner; a friend/an old friend; a stranger/an unknown man; a child/a little kid"),
        syns("in a ballroom/in a dance hall; at a party/during a party; on a rooftop/on a roof"),
    ),
    Group(
        "cleaning",
        verbs(
            "sweeping sweeps swept/brushing brushes brushed; mopping mops mopped/washing washes washed;"
            "vacuuming vacuums vacuumed/hoovering hoovers hoovered"
        ),
        syns("the floor/the ground; a carpet/a rug; the stairs/a staircase; the porch/a front porch"),
        syns("in a house/inside a house; in an office/at the office; in a hotel/at a hotel"),
    ),
)


@dataclass(frozen=True)
class Event:
    """A news event: templates with ``{S}`` (subject), ``{N}`` (number) and an optional ``{T}`` (time)."""

    name: str
    templates: tuple[str, ...]
    numbers: tuple[int, ...]
    opposite: str | None = None


def event(name: str, templates: str, numbers: str, opposite: str | None = None) -> Event:
    return Event(name, tuple(t.strip() for t in templates.split("|")), tuple(int(n) for n in numbers.split()), opposite)


_STAFF = "3 5 8 12 15 20 40 60 75 120 150 200 250 300 450 600"
_MONEY = "2 4 6 9 12 18 25 30 45 60 80 110 140 200"
_PERCENT = "2 3 4 5 6 8 10 12 15 20 25 30"
EVENTS = (
    event(
        "hire",
        "{S} hired {N} new workers {T}|{S} took on {N} additional employees {T}|{T}, {S} recruited {N} more staff"
        "|{N} new employees were hired by {S} {T}|{S} said it had added {N} jobs {T}",
        _STAFF,
        "layoff",
    ),
    event(
        "layoff",
        "{S} laid off {N} workers {T}|{S} cut {N} jobs {T}|{T}, {S} let {N} employees go"
        "|{N} jobs were eliminated by {S} {T}|{S} said it had dismissed {N} staff {T}",
        _STAFF,
        "hire",
    ),
    event(
        "open",
        "{S} opened {N} new stores {T}|{S} launched {N} additional branches {T}|{T}, {S} added {N} new locations"
        "|{N} new branches were opened by {S} {T}",
        _STAFF,
        "close",
    ),
    event(
        "close",
        "{S} closed {N} stores {T}|{S} shut {N} of its branches {T}|{T}, {S} shut down {N} locations"
        "|{N} branches were closed by {S} {T}",
        _STAFF,
        "open",
    ),
    event(
        "profit",
        "{S} reported a profit of {N} million dollars {T}|{S} posted earnings of {N} million dollars {T}"
        "|{T}, {S} made {N} million dollars in profit|{S} said it had earned {N} million dollars {T}",
        _MONEY,
        "loss",
    ),
    event(
        "loss",
        "{S} reported a loss of {N} million dollars {T}|{S} lost {N} million dollars {T}"
        "|{T}, {S} posted a loss of {N} million dollars|{S} said it had lost {N} million dollars {T}",
        _MONEY,
        "profit",
    ),
    event(
        "raise_prices",
        "{S} raised its prices by {N} percent {T}|{S} increased prices {N} percent {T}"
        "|{T}, {S} put its prices up by {N} percent|prices at {S} rose {N} percent {T}",
        _PERCENT,
        "cut_prices",
    ),
    event(
        "cut_prices",
        "{S} cut its prices by {N} percent {T}|{S} lowered prices {N} percent {T}"
        "|{T}, {S} reduced its prices by {N} percent|prices at {S} fell {N} percent {T}",
        _PERCENT,
        "raise_prices",
    ),
    event(
        "sales_up",
        "sales at {S} rose {N} percent {T}|{S} said its sales grew by {N} percent {T}"
        "|{T}, {S} saw sales climb {N} percent|{S} reported a {N} percent rise in sales {T}",
        _PERCENT,
        "sales_down",
    ),
    event(
        "sales_down",
        "sales at {S} fell {N} percent {T}|{S} said its sales dropped by {N} percent {T}"
        "|{T}, {S} saw sales slide {N} percent|{S} reported a {N} percent drop in sales {T}",
        _PERCENT,
        "sales_up",
    ),
    event(
        "shares_up",
        "shares of {S} jumped {N} percent {T}|{S} stock climbed {N} percent {T}"
        "|{T}, shares in {S} gained {N} percent|the stock of {S} rose by {N} percent {T}",
        _PERCENT,
        "shares_down",
    ),
    event(
        "shares_down",
        "shares of {S} fell {N} percent {T}|{S} stock slid {N} percent {T}"
        "|{T}, shares in {S} lost {N} percent|the stock of {S} dropped by {N} percent {T}",
        _PERCENT,
        "shares_up",
    ),
    event(
        "invest",
        "{S} invested {N} million dollars in new equipment {T}|{S} spent {N} million dollars on new machines {T}"
        "|{T}, {S} put {N} million dollars into new equipment",
        _MONEY,
        "sell_assets",
    ),
    event(
        "sell_assets",
        "{S} sold {N} million dollars of old equipment {T}|{S} raised {N} million dollars by selling machines {T}"
        "|{T}, {S} sold off {N} million dollars worth of equipment",
        _MONEY,
        "invest",
    ),
    event(
        "donate",
        "{S} donated {N} million dollars to local charities {T}|{S} gave {N} million dollars to charity {T}"
        "|{T}, {S} pledged {N} million dollars to local causes",
        _MONEY,
    ),
    event(
        "recall",
        "{S} recalled {N} thousand products {T}|{S} pulled {N} thousand items from shelves {T}"
        "|{T}, {S} called back {N} thousand of its products",
        _STAFF,
    ),
)
EVENT_BY_NAME = {e.name: e for e in EVENTS}

SUBJECTS = syns(
    "the company/the firm; the city council/the council; the airline/the carrier; the hospital/the medical center;"
    "the university/the college; the bank/the lender; the automaker/the car maker; the retailer/the store chain;"
    "the software maker/the software company; the drug maker/the pharmaceutical company;"
    "the steel producer/the steelmaker; the newspaper/the daily paper; the phone maker/the handset maker;"
    "the grocery chain/the supermarket chain"
)
TIMES = syns(
    "last week/in the past week; on Monday/on Monday; last year/over the past year; this month/so far this month;"
    "in March/during March; in the third quarter/in the July to September quarter; on Friday/late on Friday;"
    "last month/in the previous month; this year/so far this year"
)
NUMBER_WORDS = {
    2: "two",
    3: "three",
    4: "four",
    5: "five",
    6: "six",
    8: "eight",
    9: "nine",
    10: "ten",
    12: "twelve",
    15: "fifteen",
    20: "twenty",
    25: "twenty-five",
    30: "thirty",
    40: "forty",
    60: "sixty",
}

CAPTIONS, NEWS = "captions", "news"


@dataclass(frozen=True)
class Frame:
    """What a sentence means. Captions: agent, group, action, object, place; news: subject, event, number, time."""

    genre: str
    who: int
    kind: int
    """Activity group (captions) or event (news)."""
    what: int
    """Action within the group (captions) or the number (news)."""
    thing: int
    """Object within the group (captions); unused for news."""
    extra: int | None
    """Place (captions) or time (news); None: not mentioned."""


def random_frame(r: random.Random, genre: str) -> Frame:
    if genre == CAPTIONS:
        kind = r.randrange(len(GROUPS))
        group = GROUPS[kind]
        extra = r.randrange(len(group.places)) if r.random() < 0.6 else None
        return Frame(
            genre,
            r.randrange(len(PEOPLE)),
            kind,
            r.randrange(len(group.actions)),
            r.randrange(len(group.objects)),
            extra,
        )
    kind = r.randrange(len(EVENTS))
    extra = r.randrange(len(TIMES)) if r.random() < 0.7 else None
    return Frame(genre, r.randrange(len(SUBJECTS)), kind, r.choice(EVENTS[kind].numbers), 0, extra)


def _other(r: random.Random, count: int, current: int) -> int:
    return r.choice([i for i in range(count) if i != current])


def related(r: random.Random, frame: Frame, level: int) -> tuple[Frame, Frame]:
    """A pair of frames at the relation ``level`` (5 paraphrase ... 0 unrelated), the first based on ``frame``."""
    news = frame.genre == NEWS
    if level == 5:
        return frame, frame
    if level == 4:
        if frame.extra is None:
            count = len(TIMES) if news else len(GROUPS[frame.kind].places)
            frame = replace(frame, extra=r.randrange(count))
        return (frame, replace(frame, extra=None)) if r.random() < 0.5 else (replace(frame, extra=None), frame)
    if level == 3:
        if news:
            if r.random() < 0.6:
                numbers = EVENTS[frame.kind].numbers
                return frame, replace(frame, what=numbers[_other(r, len(numbers), numbers.index(frame.what))])
            return frame, replace(frame, who=_other(r, len(SUBJECTS), frame.who))
        if r.random() < 0.6:
            return frame, replace(frame, thing=_other(r, len(GROUPS[frame.kind].objects), frame.thing))
        return frame, replace(frame, who=_other(r, len(PEOPLE), frame.who))
    if level == 2:
        if news:
            name = EVENTS[frame.kind].opposite
            kind = EVENTS.index(EVENT_BY_NAME[name]) if name else _other(r, len(EVENTS), frame.kind)
            number = frame.what if frame.what in EVENTS[kind].numbers else r.choice(EVENTS[kind].numbers)
            return frame, replace(frame, kind=kind, what=number)
        return frame, replace(frame, what=_other(r, len(GROUPS[frame.kind].actions), frame.what))
    if level == 1:
        other = random_frame(r, frame.genre)
        while other.kind == frame.kind or other.who == frame.who:
            other = random_frame(r, frame.genre)
        if not news and r.random() < 0.5:
            other = replace(other, who=frame.who)  # same person, another activity entirely
        return frame, other
    return frame, random_frame(r, CAPTIONS if news else NEWS)


def _pick(r: random.Random, options: Syn) -> str:
    return r.choice(options)


def _caption(r: random.Random, frame: Frame) -> str:
    group = GROUPS[frame.kind]
    agent = _pick(r, PEOPLE[frame.who])
    ing, third, participle = r.choice(group.actions[frame.what].forms)
    thing = _pick(r, group.objects[frame.thing])
    place = "" if frame.extra is None else _pick(r, group.places[frame.extra])
    at = f" {place}" if place else ""
    templates = [
        f"{agent} is {ing} {thing}{at}",
        f"{agent} {third} {thing}{at}",
        f"{thing} is being {participle} by {agent}{at}",
    ]
    if place:
        templates.append(f"{place}, {agent} is {ing} {thing}")
    templates.append(f"there is {agent} {ing} {thing}{at}")
    return r.choice(templates)


def _number(r: random.Random, n: int) -> str:
    return NUMBER_WORDS[n] if n in NUMBER_WORDS and r.random() < 0.4 else str(n)


def _headline(r: random.Random, frame: Frame) -> str:
    template = r.choice(EVENTS[frame.kind].templates)
    time = "" if frame.extra is None else _pick(r, TIMES[frame.extra])
    if not time:
        template = template.replace("{T}, ", "").replace(" {T}", "")
    return template.format(S=_pick(r, SUBJECTS[frame.who]), N=_number(r, frame.what), T=time)


def realise(r: random.Random, frame: Frame) -> str:
    """One surface form of ``frame``: a lower-case sentence without final punctuation."""
    return _caption(r, frame) if frame.genre == CAPTIONS else _headline(r, frame)


def sentence_case(text: str, final: str = ".") -> str:
    return text[0].upper() + text[1:] + final


def draw_pair(r: random.Random, genre: str, level: int, drop_extra: float = 0.0) -> tuple[Frame, Frame, str, str]:
    """Two frames at ``level`` and their realisations, never the same string twice.

    ``drop_extra``: at levels 2 and 3, the chance that the second side also loses its place or time, so that a
    length difference is no sign of a level-4 pair.
    """
    first, second = related(r, random_frame(r, genre), level)
    if level in (2, 3) and r.random() < drop_extra:
        second = replace(second, extra=None)
    for _ in range(50):
        one, two = realise(r, first), realise(r, second)
        if one != two:
            return first, second, one, two
    raise RuntimeError(f"cannot realise two different sentences for {first} / {second}")


@dataclass(frozen=True)
class Pair:
    level: int
    genre: str
    """The first sentence's genre (a level-0 pair mixes both)."""
    first: str
    second: str


def pair_key(first: str, second: str) -> tuple[str, str]:
    """Order-free identity of a pair: (a, b) and (b, a) are the same pair for leakage and duplicates."""
    return (first, second) if first <= second else (second, first)


def draw_blocks(
    r: random.Random,
    blocks: int,
    levels: tuple[int, ...],
    news_share: float,
    finish: Callable[[str], str],
    seen: set[tuple[str, str]],
    drop_extra: float = 0.0,
) -> list[Pair]:
    """``blocks`` shuffled blocks holding one pair per entry of ``levels``; no pair (in either order) in ``seen``.

    Blocks keep every head cut of a file (``data.max_train_rows``) close to the full file's level mix.
    """
    rows: list[Pair] = []
    for _ in range(blocks):
        block = []
        for level in levels:
            for _attempt in range(200):
                genre = NEWS if r.random() < news_share else CAPTIONS
                _, _, one, two = draw_pair(r, genre, level, drop_extra)
                one, two = finish(one), finish(two)
                if pair_key(one, two) not in seen:
                    break
            else:
                raise RuntimeError("the sentence model is too small for the requested number of distinct pairs")
            seen.add(pair_key(one, two))
            block.append(Pair(level, genre, one, two))
        r.shuffle(block)
        rows.extend(block)
    return rows
