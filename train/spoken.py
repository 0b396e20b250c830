"""Spoken vocal non-screams: vowels, hums, laughs, sighs and short words said by espeak-ng.

The vocal non-screams that fire most on unheard audio are scarce in the corpus. espeak-ng (the
Debian package of that name, a formant speech synthesiser) says them in endless variations: each
sound is one utterance from UTTERANCES in one of VOICES at a random pitch (0-99), speed and word
gap, sometimes stretched into a long vowel, resampled to the model rate and levelled. They are
training material only (`TrainConfig.spoken_fraction`); whether they help is measured on
leave-source-out scenes (`scream crossval --by source --baseline`), not assumed. The edge never
imports this module.

espeak-ng is deterministic: the same seed gives the same samples on the same espeak-ng version.

`python -m train.spoken --out DIR` writes a few for listening.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import numpy.typing as npt

from edge.errors import ScreamError

FloatArray = npt.NDArray[np.float32]

ESPEAK = "espeak-ng"

# What people say or utter that is not a scream: held vowels and hums, laughs, sighs and effort
# sounds, exclamations, and everyday words (a scream detector hears a lot of talk).
UTTERANCES = (
    "aah", "aaaah", "ooh", "oooh", "ohh", "uhh", "eee", "mmm", "hmmm", "mm hmm", "uh huh",
    "ah ah ah", "oh oh oh", "ha ha ha", "hahaha", "he he he", "ho ho ho", "phew", "ugh", "oof",
    "ow", "ouch", "whoa", "wow", "oh no", "oh my god", "yay", "hey", "hello", "yes", "no no no",
    "come on", "okay", "what", "really", "oh dear", "good night", "hurry up", "look at that",
    "where are you", "dinner is ready", "I am tired",
)  # fmt: skip

# espeak-ng voice variants shipped in Debian's espeak-ng-data (male, female, old, breathy, rough,
# klatt-synthesised), each on an English accent from ACCENTS.
VOICES = (
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5", "croak", "whisper",
    "klatt", "klatt2", "klatt3", "klatt4", "grandma", "grandpa", "Annie", "linda", "belinda",
)  # fmt: skip
ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-029")


class SpokenError(ScreamError):
    """espeak-ng is missing or failed to say something."""


def espeak_version() -> str:
    """espeak-ng's version line, or a SpokenError naming the Debian package to install."""
    return _run([ESPEAK, "--version"]).stdout.decode(errors="replace").strip()


def check_voices() -> None:
    """Refuse an espeak-ng that lacks one of ACCENTS or VOICES: it would fall back to its default
    voice without a word, and the pool would quietly lose its variety."""
    variants = {line.split()[-1].removeprefix("!v/") for line in _voices("variant")[1:] if line.strip()}
    languages = {line.split()[1] for line in _voices("en")[1:] if line.strip()}
    missing = [f"variant {v}" for v in VOICES if v not in variants]
    missing += [f"language {a}" for a in ACCENTS if a not in languages]
    if missing:
        raise SpokenError(f"{ESPEAK} ({espeak_version()}) lacks {', '.join(missing)}")


def _voices(which: str) -> list[str]:
    return _run([ESPEAK, f"--voices={which}"]).stdout.decode(errors="replace").splitlines()


def _run(argv: list[str]) -> subprocess.CompletedProcess[bytes]:
    if shutil.which(ESPEAK) is None:
        raise SpokenError(
            f"{ESPEAK} not found: spoken negatives need the Debian package espeak-ng (apt install espeak-ng)"
        )
    done = subprocess.run(argv, capture_output=True, timeout=60, check=False)
    if done.returncode != 0:
        message = done.stderr.decode(errors="replace").strip() or f"exit status {done.returncode}"
        raise SpokenError(f"{' '.join(argv)}: {message}")
    return done


def _stretch(text: str, rng: np.random.Generator) -> str:
    """Sometimes hold the utterance's first vowel longer ('aaah' -> 'aaaaaaah')."""
    if rng.random() >= 0.3:
        return text
    for i, ch in enumerate(text):
        if ch in "aeiou":
            return text[:i] + ch * int(rng.integers(3, 9)) + text[i + 1 :]
    return text


def say(text: str, voice: str, *, pitch: int, speed: int, gap: int, rate: int) -> FloatArray:
    """`text` said by espeak-ng `voice` ('en-us+f3'), mono float32 at `rate` Hz, silence trimmed."""
    from edge.audio import open_audio
    from edge.resample import resample

    with tempfile.TemporaryDirectory(prefix="spoken-") as tmp:
        path = Path(tmp) / "say.wav"
        _run([ESPEAK, "-v", voice, "-p", str(pitch), "-s", str(speed), "-g", str(gap), "-w", str(path), text])
        audio = open_audio(path)
        samples = audio.read_all()
        source_rate = audio.sample_rate_hz
    if samples.size == 0 or not np.any(samples):
        raise SpokenError(f"{ESPEAK} -v {voice} said nothing for {text!r}")
    loud = np.flatnonzero(np.abs(samples) > 0.01 * float(np.max(np.abs(samples))))
    samples = samples[loud[0] : loud[-1] + 1]
    return resample(samples, source_rate, rate).astype(np.float32)


def sound(rate: int, rng: np.random.Generator) -> FloatArray:
    """One spoken vocal non-scream at `rate` Hz, peaking at -30 to -3 dBFS, drawn from `rng`."""
    text = _stretch(str(rng.choice(UTTERANCES)), rng)
    voice = f"{rng.choice(ACCENTS)}+{rng.choice(VOICES)}"
    x = say(
        text,
        voice,
        pitch=int(rng.integers(0, 100)),
        speed=int(rng.integers(80, 261)),
        gap=int(rng.integers(0, 11)),
        rate=rate,
    )
    peak = float(np.max(np.abs(x)))
    return np.asarray(x / peak * 10 ** (rng.uniform(-30, -3) / 20), dtype=np.float32)


def pool(count: int, rate: int, seed: int) -> list[FloatArray]:
    """`count` spoken negatives, sound i seeded by (seed, i)."""
    check_voices()
    return [sound(rate, np.random.default_rng([seed, 104729, i])) for i in range(count)]


def write_examples(out: Path, *, count: int = 12, rate: int = 16000, seed: int = 0) -> list[Path]:
    from edge.audio import write_wav

    out.mkdir(parents=True, exist_ok=True)
    written = []
    for i, x in enumerate(pool(count, rate, seed)):
        path = out / f"spoken-{i}.wav"
        write_wav(path, x, rate)
        written.append(path)
    return written


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="write examples of the spoken negatives")
    parser.add_argument("--out", required=True)
    parser.add_argument("--count", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    cli = parser.parse_args()
    for written in write_examples(Path(cli.out), count=cli.count, seed=cli.seed):
        print(written)
