"""The sentence grammar of the synthetic speech corpus: the project's own everyday-English
word lists and a dozen sentence templates, sampled with a seed (:class:`SentenceGrammar`).

No text is copied from a text source.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable

from attrs import field, frozen, validators

__all__ = ["SentenceGrammar"]

# =========================================================================== the grammar
# The project's own word lists (everyday American English). Every noun takes "a" (not "an")
# unless it starts with a vowel letter, so the lists avoid words like "hour" or "uniform".
_NAMES = (
    "Anna Ben Clara David Emma Frank Grace Henry Lucy Jack Kate Leo Maria Nick Olivia Paul "
    "Rosa Sam Tina Victor Alice Oscar Ruby Tom Nora Peter Sara Adam Helen Max"
).split()
_PEOPLE = (
    "teacher doctor farmer baker driver nurse painter student neighbor child man woman boy "
    "girl friend brother sister mother father uncle aunt cook pilot singer writer captain "
    "waiter king queen guard sailor gardener dentist artist"
).split()
_THINGS = (
    "book box chair table cup glass plate bottle bag letter key phone lamp clock coat hat "
    "shoe ball kite picture map ticket door basket bucket blanket pillow rope candle brush "
    "pencil pen paper card gift toy bike boat car truck umbrella envelope radio camera guitar "
    "piano drum mirror towel jacket glove watch ring stone flower bell fork spoon bowl jar "
    "wallet helmet ladder hammer tent sock sweater button"
).split()
_FOOD = (
    "apple orange egg cake bread sandwich carrot potato tomato banana cookie pie lemon onion "
    "peach melon cherry pear muffin sausage"
).split()
_ANIMALS = (
    "dog cat horse bird fish rabbit duck cow sheep goat mouse frog bear fox lion tiger owl "
    "pig hen monkey puppy kitten turtle"
).split()
_PLACES = (
    "kitchen garden park station market school library river lake forest beach bridge office "
    "hospital village city hill road shop hotel farm museum bakery harbor airport field "
    "castle street corner yard restaurant theater zoo island valley tower"
).split()
_ADJECTIVES = (
    "small big old new young red green blue yellow black white brown heavy light warm cold "
    "hot clean dirty empty full soft hard quiet loud happy tired busy long short tall round "
    "sharp bright dark fresh sweet strong simple gentle lucky funny strange famous tiny "
    "huge pretty broken wooden silver golden purple orange careful friendly angry"
).split()
_ADVERBS = (
    "slowly quickly quietly loudly happily carefully early late again together alone "
    "suddenly gently proudly calmly badly politely"
).split()
_TRANSITIVE = (  # (base, past)
    ("carry", "carried"),
    ("find", "found"),
    ("buy", "bought"),
    ("sell", "sold"),
    ("bring", "brought"),
    ("take", "took"),
    ("make", "made"),
    ("clean", "cleaned"),
    ("paint", "painted"),
    ("open", "opened"),
    ("close", "closed"),
    ("wash", "washed"),
    ("fix", "fixed"),
    ("drop", "dropped"),
    ("lose", "lost"),
    ("hold", "held"),
    ("move", "moved"),
    ("push", "pushed"),
    ("pull", "pulled"),
    ("throw", "threw"),
    ("catch", "caught"),
    ("hide", "hid"),
    ("keep", "kept"),
    ("watch", "watched"),
    ("draw", "drew"),
    ("build", "built"),
    ("order", "ordered"),
    ("pack", "packed"),
    ("fill", "filled"),
    ("lift", "lifted"),
    ("borrow", "borrowed"),
    ("share", "shared"),
    ("send", "sent"),
    ("want", "wanted"),
    ("see", "saw"),
    ("count", "counted"),
    ("check", "checked"),
    ("choose", "chose"),
    ("cover", "covered"),
    ("wrap", "wrapped"),
    ("follow", "followed"),
    ("chase", "chased"),
    ("feed", "fed"),
    ("forget", "forgot"),
    ("notice", "noticed"),
)
_INTRANSITIVE = (  # (base, past)
    ("walk", "walked"),
    ("go", "went"),
    ("run", "ran"),
    ("sleep", "slept"),
    ("wait", "waited"),
    ("sing", "sang"),
    ("laugh", "laughed"),
    ("arrive", "arrived"),
    ("travel", "traveled"),
    ("work", "worked"),
    ("swim", "swam"),
    ("dance", "danced"),
    ("rest", "rested"),
    ("sit", "sat"),
    ("stay", "stayed"),
    ("play", "played"),
    ("cook", "cooked"),
    ("talk", "talked"),
    ("listen", "listened"),
    ("jump", "jumped"),
)
_PREPOSITIONS = "in near behind inside outside beside at across under above".split()
_PAST_TIMES = (
    "yesterday",
    "last night",
    "this morning",
    "on Monday",
    "on Tuesday",
    "on Saturday",
    "last week",
    "at noon",
    "after lunch",
    "before dinner",
    "in the evening",
    "two days ago",
    "last summer",
    "last winter",
)
_FUTURE_TIMES = (
    "tomorrow",
    "next week",
    "on Friday",
    "on Sunday",
    "tonight",
    "this evening",
    "after dinner",
    "in the morning",
    "next year",
    "soon",
    "later today",
    "next spring",
)
_PRONOUNS = ("she", "he", "they", "we", "I")
_DETERMINERS = ("the", "a", "my", "your", "his", "her", "our", "their", "this", "that")
_PLURAL_DETERMINERS = ("the", "my", "your", "his", "her", "our", "their", "these", "those")
_IRREGULAR_PLURALS = {
    "child": "children",
    "man": "men",
    "woman": "women",
    "mouse": "mice",
    "fish": "fish",
    "sheep": "sheep",
    "potato": "potatoes",
    "tomato": "tomatoes",
}
_ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen".split()
_TEENS = {14: "fourteen", 15: "fifteen", 16: "sixteen", 17: "seventeen", 18: "eighteen"}
_TEENS[19] = "nineteen"
_TENS = {2: "twenty", 3: "thirty", 4: "forty", 5: "fifty", 6: "sixty", 7: "seventy"}
_TENS.update({8: "eighty", 9: "ninety"})

# Templates: "{slot}" is filled by the grammar; everything else is literal.
_TEMPLATES = (
    "{subject} {tv_past} {object} {place}.",
    "{subject} {tv_past} {object} {past_time}.",
    "{past_time}, {subject} {iv_past} {adverb}.",
    "{subject} {iv_past} {adverb} {place}.",
    "{subject} {tv_past} {number} {adjective} {plural} {past_time}.",
    "did {subject} {tv_base} {object} {past_time}?",
    "there were {number} {adjective} {plural} {place}.",
    "{name} wants to {tv_base} {object} {future_time}.",
    "please {tv_base} {object} before {future_time}.",
    "{subject} said that {object} was very {adjective}.",
    "where did {subject} {iv_base} {past_time}?",
    "{subject} and {name} {iv_past} {place} {past_time}.",
    "we will {tv_base} {object} {future_time}.",
    "how many {plural} did {subject} {tv_base}?",
    "{object} is {adjective}, but {object} is {adjective}.",
    "{subject} {iv_past} {adverb}, and then {subject} {tv_past} {object}!",
)
_SLOT = re.compile(r"\{(\w+)\}")
_WORD = re.compile(r"[A-Za-z']+")


def _plural(noun: str) -> str:
    if noun in _IRREGULAR_PLURALS:
        return _IRREGULAR_PLURALS[noun]
    if noun.endswith(("s", "x", "ch", "sh", "z")):
        return noun + "es"
    if noun.endswith("y") and noun[-2] not in "aeiou":
        return noun[:-1] + "ies"
    return noun + "s"


def _number_words(n: int) -> str:
    if n < 14:
        return _ONES[n]
    if n < 20:
        return _TEENS[n]
    tens, ones = divmod(n, 10)
    return _TENS[tens] + ("" if ones == 0 else " " + _ONES[ones])


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


@frozen
class SentenceGrammar:
    """A seeded generator of everyday English sentences over the project's own vocabulary.

    Sentences follow subject/verb/object/place/time/adverb/number templates, e.g. *"The tired
    baker carried two heavy baskets yesterday."* or *"Where did Clara go last week?"*. Numbers are
    written in words, so that every synthesiser reads the text the same way.

    Attributes:
        seed: the seed; the same seed gives the same sentences, in the same order.
        min_words: shortest sentence kept (in words).
        max_words: longest sentence kept.

    Example:
        >>> SentenceGrammar(seed=0).generate(1)
        ['We will order this golden card tonight.']
    """

    seed: int = 0
    min_words: int = field(default=4, validator=validators.ge(1))
    max_words: int = field(default=16, validator=validators.ge(1))

    def __attrs_post_init__(self) -> None:
        if self.max_words < self.min_words:
            raise ValueError(f"max_words ({self.max_words}) < min_words ({self.min_words})")

    # ----------------------------------------------------------------- slots
    def _noun_phrase(self, rng: random.Random, noun: str) -> str:
        det = rng.choice(_DETERMINERS)
        words = [noun] if rng.random() < 0.45 else [rng.choice(_ADJECTIVES), noun]
        if det == "a":
            det = _article(words[0])
        return " ".join([det, *words])

    def _slot(self, name: str, rng: random.Random) -> str:
        if name == "subject":
            roll = rng.random()
            if roll < 0.25:
                return rng.choice(_NAMES)
            if roll < 0.4:
                return rng.choice(_PRONOUNS)
            return self._noun_phrase(rng, rng.choice(_PEOPLE))
        if name == "name":
            return rng.choice(_NAMES)
        if name == "object":
            pool = rng.choice((_THINGS, _THINGS, _FOOD, _ANIMALS))
            return self._noun_phrase(rng, rng.choice(pool))
        if name == "plural":
            return _plural(rng.choice(rng.choice((_THINGS, _FOOD, _ANIMALS, _PEOPLE))))
        if name == "place":
            adjective = f"{rng.choice(_ADJECTIVES)} " if rng.random() < 0.3 else ""
            return f"{rng.choice(_PREPOSITIONS)} the {adjective}{rng.choice(_PLACES)}"
        if name == "number":
            return _number_words(rng.choice((2, 3, 4, 5, 6, 7, 8, 9, 10, 12, rng.randint(13, 99))))
        if name == "tv_past":
            return rng.choice(_TRANSITIVE)[1]
        if name == "tv_base":
            return rng.choice(_TRANSITIVE)[0]
        if name == "iv_past":
            return rng.choice(_INTRANSITIVE)[1]
        if name == "iv_base":
            return rng.choice(_INTRANSITIVE)[0]
        if name == "adverb":
            return rng.choice(_ADVERBS)
        if name == "adjective":
            return rng.choice(_ADJECTIVES)
        if name == "past_time":
            return rng.choice(_PAST_TIMES)
        if name == "future_time":
            return rng.choice(_FUTURE_TIMES)
        raise KeyError(f"unknown grammar slot {name!r}")  # pragma: no cover - templates are fixed

    def sentence(self, rng: random.Random) -> str:
        """One sentence drawn with ``rng`` (a :class:`random.Random`)."""
        template = rng.choice(_TEMPLATES)
        text = _SLOT.sub(lambda m: self._slot(m.group(1), rng), template)
        return text[0].upper() + text[1:]

    def generate(self, n: int) -> list[str]:
        """``n`` distinct sentences, deterministic for the seed.

        Args:
            n: how many.

        Raises:
            ValueError: when ``n`` is negative, or the grammar cannot produce that many distinct
                sentences within the length limits.
        """
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        rng = random.Random(self.seed)
        seen: dict[str, None] = {}
        tries = 0
        while len(seen) < n:
            tries += 1
            if tries > 50 * n + 1000:
                raise ValueError(
                    f"could not draw {n} distinct sentences of {self.min_words}..{self.max_words} "
                    "words; widen the length limits"
                )
            text = self.sentence(rng)
            if self.min_words <= len(_WORD.findall(text)) <= self.max_words:
                seen.setdefault(text, None)
        return list(seen)

    @staticmethod
    def vocabulary() -> frozenset[str]:
        """Every word (lower case) the grammar can produce."""
        words: set[str] = set()

        def add(items: Iterable[str]) -> None:
            for item in items:
                words.update(w.lower() for w in _WORD.findall(item))

        nouns = _PEOPLE + _THINGS + _FOOD + _ANIMALS
        add(_NAMES + nouns + _PLACES + _ADJECTIVES + _ADVERBS + _PREPOSITIONS)
        add(_plural(n) for n in nouns)
        add(f for pair in _TRANSITIVE + _INTRANSITIVE for f in pair)
        add(_PAST_TIMES + _FUTURE_TIMES + _PRONOUNS + _DETERMINERS + _PLURAL_DETERMINERS)
        add(("an",))
        add(_number_words(n) for n in range(100))
        add(_SLOT.sub(" ", t) for t in _TEMPLATES)
        return frozenset(words)

    @staticmethod
    def words(sentence: str) -> list[str]:
        """The words of ``sentence``, lower case, punctuation removed."""
        return [w.lower() for w in _WORD.findall(sentence)]
