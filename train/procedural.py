"""Procedural hard negatives: human sounds that are not screams, and alarms, made by construction.

What fires most on unheard audio are vocal non-screams (sighs, yawns, moans, panting, gasps, effort
grunts, sobbing, laughter), and they are the scarcest family in the corpus; ringtones, alarms and
sirens come next. These generators make endless seeded variations of them: a source-filter voice
(a glottal pulse train with jitter, shimmer and spectral tilt, through moving formant resonators,
plus breath noise) for the vocal families, and tones with varied timbre and rhythm for the others.
They are training material only (`TrainConfig.procedural_fraction`): whether a family helps is
measured on leave-source-out scenes (`scream crossval --by source --baseline`), not assumed.

`python -m train.procedural --out DIR` writes a few of each for listening.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
from scipy import signal

FloatArray = npt.NDArray[np.float32]
Generator = Callable[[int, np.random.Generator], FloatArray]

# Vowel formants (F1, F2, F3 in Hz) of an adult voice; a random speaker scales them by 0.85-1.2.
VOWELS = {"a": (750, 1200, 2600), "o": (500, 850, 2500), "u": (350, 750, 2400), "e": (500, 1800, 2600)}


def _resonate(x: npt.NDArray[np.float64], freq: npt.ArrayLike, bandwidth: float, rate: int) -> npt.NDArray[np.float64]:
    """A two-pole resonator at `freq` (a constant, or one value per sample, moving slowly)."""
    f = np.broadcast_to(np.asarray(freq, dtype=np.float64), x.shape)
    out = np.zeros_like(x)
    r = np.exp(-np.pi * bandwidth / rate)
    step = 160  # the coefficients follow the formant every 10 ms at 16 kHz
    state = np.zeros(2)
    for start in range(0, x.size, step):
        theta = 2 * np.pi * float(f[start]) / rate
        a = [1.0, -2 * r * np.cos(theta), r * r]
        b = [1.0 - r]
        out[start : start + step], state = signal.lfilter(b, a, x[start : start + step], zi=state)
    return out


def _glottal(
    f0: npt.NDArray[np.float64], rate: int, rng: np.random.Generator, *, tilt: float
) -> npt.NDArray[np.float64]:
    """A voiced source at the pitch contour `f0` (Hz per sample): harmonics falling off at `tilt`
    dB per octave, with cycle-to-cycle jitter and shimmer."""
    jitter = 1 + 0.01 * rng.uniform(0.3, 2.0) * signal.lfilter([1.0], [1.0, -0.99], rng.standard_normal(f0.size)) / 10
    phase = 2 * np.pi * np.cumsum(f0 * jitter) / rate
    out = np.zeros(f0.size)
    for k in range(1, 40):
        audible = k * f0 < 0.45 * rate
        if not audible.any():
            break
        out += audible * np.sin(k * phase + rng.uniform(0, 2 * np.pi)) * 10 ** (-tilt * np.log2(k) / 20)
    shimmer = 1 + 0.1 * signal.lfilter([1.0], [1.0, -0.995], rng.standard_normal(f0.size)) / 10
    return out * shimmer


def _voice(
    f0: npt.NDArray[np.float64],
    vowel: tuple[npt.ArrayLike, npt.ArrayLike, npt.ArrayLike],
    rate: int,
    rng: np.random.Generator,
    *,
    breathiness: float,
    tilt: float = 12.0,
) -> npt.NDArray[np.float64]:
    """A source-filter voice: glottal pulses (and breath noise, `breathiness` 0-1) through three
    formants (constants, or contours with one value per sample)."""
    scale = rng.uniform(0.85, 1.2)
    source = (1 - breathiness) * _glottal(f0, rate, rng, tilt=tilt)
    source = source / (np.std(source) + 1e-12) + breathiness * 2.0 * rng.standard_normal(f0.size)
    out = np.zeros(f0.size)
    for formant, width, gain in zip(vowel, (90.0, 120.0, 180.0), (1.0, 0.6, 0.25), strict=True):
        out += gain * _resonate(source, np.asarray(formant) * scale, width, rate)
    return out


def _breath_noise(n: int, rate: int, rng: np.random.Generator, *, low: float, high: float) -> npt.NDArray[np.float64]:
    sos = signal.butter(2, [low, min(high, 0.45 * rate)], btype="bandpass", fs=rate, output="sos")
    return np.asarray(signal.sosfilt(sos, rng.standard_normal(n)))


def _envelope(n: int, rate: int, attack_s: float, release_s: float) -> npt.NDArray[np.float64]:
    t = np.arange(n) / rate
    rise = np.clip(t / max(attack_s, 1e-3), 0, 1)
    fall = np.clip((n / rate - t) / max(release_s, 1e-3), 0, 1)
    return np.sin(0.5 * np.pi * rise) ** 2 * np.sin(0.5 * np.pi * fall) ** 2


def _contour(n: int, points: list[float]) -> npt.NDArray[np.float64]:
    """A smooth pitch contour through `points` spread evenly over n samples."""
    return np.interp(np.linspace(0, len(points) - 1, n), np.arange(len(points)), points)


def breath(rate: int, rng: np.random.Generator) -> FloatArray:
    """An inhale or exhale: band noise with a slow rise and fall, sometimes both in turn."""
    parts = []
    for _ in range(int(rng.integers(1, 3))):
        n = int(rng.uniform(0.4, 1.4) * rate)
        noise = _breath_noise(n, rate, rng, low=rng.uniform(300, 800), high=rng.uniform(2000, 5000))
        parts.append(noise * _envelope(n, rate, rng.uniform(0.1, 0.4), rng.uniform(0.2, 0.6)))
        parts.append(np.zeros(int(rng.uniform(0.05, 0.4) * rate)))
    return _level(np.concatenate(parts), rng)


def sigh(rate: int, rng: np.random.Generator) -> FloatArray:
    """A breathy exhale whose faint voice falls in pitch."""
    n = int(rng.uniform(0.8, 2.2) * rate)
    start = rng.uniform(140, 320)
    f0 = _contour(n, [start, start * rng.uniform(0.6, 0.85), start * rng.uniform(0.45, 0.65)])
    vowel = VOWELS[str(rng.choice(["a", "o", "e"]))]
    voice = _voice(f0, vowel, rate, rng, breathiness=rng.uniform(0.55, 0.9))
    return _level(voice * _envelope(n, rate, rng.uniform(0.05, 0.3), rng.uniform(0.4, 1.0)), rng)


def moan(rate: int, rng: np.random.Generator) -> FloatArray:
    """A sustained low voice (90-350 Hz) on a dark vowel, gliding slowly: pain, pleasure, effort."""
    n = int(rng.uniform(0.6, 2.5) * rate)
    base = rng.uniform(90, 350)
    f0 = _contour(n, list(base * rng.uniform(0.8, 1.25, size=int(rng.integers(2, 5)))))
    f0 *= 1 + rng.uniform(0, 0.03) * np.sin(2 * np.pi * rng.uniform(3, 6) * np.arange(n) / rate)
    vowel = VOWELS[str(rng.choice(["o", "u", "a"]))]
    voice = _voice(f0, vowel, rate, rng, breathiness=rng.uniform(0.05, 0.4), tilt=rng.uniform(10, 16))
    return _level(voice * _envelope(n, rate, rng.uniform(0.08, 0.4), rng.uniform(0.2, 0.6)), rng)


def yawn(rate: int, rng: np.random.Generator) -> FloatArray:
    """A yawn: the pitch rises, then falls long while the mouth opens (the formants move up)."""
    n = int(rng.uniform(1.2, 3.0) * rate)
    low = rng.uniform(100, 200)
    f0 = _contour(n, [low, low * rng.uniform(1.4, 2.2), low * rng.uniform(0.7, 1.0)])
    opening = np.clip(np.linspace(-0.5, 1.5, n), 0, 1)  # from /u/ to /a/ over the middle of it
    formants = tuple(u + (a - u) * opening for u, a in zip(VOWELS["u"], VOWELS["a"], strict=True))
    voice = _voice(f0, formants, rate, rng, breathiness=rng.uniform(0.3, 0.7))
    return _level(voice * _envelope(n, rate, rng.uniform(0.2, 0.6), rng.uniform(0.4, 1.0)), rng)


def panting(rate: int, rng: np.random.Generator) -> FloatArray:
    """Quick breaths, 2-4 a second, some of them voiced."""
    parts = []
    for _ in range(int(rng.integers(3, 9))):
        n = int(rng.uniform(0.12, 0.3) * rate)
        sound = _breath_noise(n, rate, rng, low=rng.uniform(400, 900), high=rng.uniform(2500, 6000))
        if rng.random() < 0.4:
            f0 = np.full(n, rng.uniform(120, 300))
            sound = sound / (np.std(sound) + 1e-12) + 0.7 * _voice(f0, VOWELS["a"], rate, rng, breathiness=0.6)
        parts.append(sound * _envelope(n, rate, 0.03, 0.08))
        parts.append(np.zeros(int(rng.uniform(0.05, 0.25) * rate)))
    return _level(np.concatenate(parts), rng)


def gasp(rate: int, rng: np.random.Generator) -> FloatArray:
    """A sharp inhale, sometimes ending on a short voiced 'ah'."""
    n = int(rng.uniform(0.15, 0.45) * rate)
    sound = _breath_noise(n, rate, rng, low=rng.uniform(800, 1500), high=rng.uniform(4000, 7000))
    sound = sound / (np.std(sound) + 1e-12) * _envelope(n, rate, 0.01, rng.uniform(0.05, 0.15))
    if rng.random() < 0.5:
        m = int(rng.uniform(0.1, 0.35) * rate)
        f0 = _contour(m, [rng.uniform(180, 420), rng.uniform(150, 300)])
        ah = _voice(f0, VOWELS["a"], rate, rng, breathiness=rng.uniform(0.2, 0.5))
        sound = np.concatenate([sound, ah / (np.std(ah) + 1e-12) * _envelope(m, rate, 0.02, 0.08)])
    return _level(sound, rng)


def grunt(rate: int, rng: np.random.Generator) -> FloatArray:
    """Effort or pain: a short, low, creaky voice (strong jitter), one to three in a row."""
    parts = []
    for _ in range(int(rng.integers(1, 4))):
        n = int(rng.uniform(0.12, 0.5) * rate)
        f0 = _contour(n, [rng.uniform(80, 180), rng.uniform(70, 160)])
        f0 *= 1 + 0.08 * rng.standard_normal(n).cumsum() / np.sqrt(np.arange(1, n + 1))
        voice = _voice(np.clip(f0, 50, 400), VOWELS[str(rng.choice(["a", "u", "e"]))], rate, rng, breathiness=0.15)
        parts += [voice * _envelope(n, rate, 0.015, 0.08), np.zeros(int(rng.uniform(0.08, 0.4) * rate))]
    return _level(np.concatenate(parts), rng)


def sobbing(rate: int, rng: np.random.Generator) -> FloatArray:
    """Adult crying: pulsed, falling syllables (250-500 Hz) with catching breaths between."""
    parts = []
    for _ in range(int(rng.integers(2, 6))):
        n = int(rng.uniform(0.2, 0.6) * rate)
        start = rng.uniform(250, 500)
        f0 = _contour(n, [start, start * rng.uniform(0.6, 0.85)])
        voice = _voice(f0, VOWELS[str(rng.choice(["a", "u"]))], rate, rng, breathiness=rng.uniform(0.2, 0.5))
        catch = _breath_noise(int(0.12 * rate), rate, rng, low=900, high=5000)
        parts += [voice * _envelope(n, rate, 0.03, 0.15), 0.4 * catch * _envelope(catch.size, rate, 0.01, 0.05)]
    return _level(np.concatenate(parts), rng)


def laughter(rate: int, rng: np.random.Generator) -> FloatArray:
    """'Ha ha ha': 4-6 syllables a second at 180-450 Hz, breathy, fading."""
    parts = []
    f0_base = rng.uniform(180, 450)
    count = int(rng.integers(3, 9))
    for k in range(count):
        n = int(rng.uniform(0.08, 0.16) * rate)
        f0 = _contour(n, [f0_base * rng.uniform(0.95, 1.1), f0_base * rng.uniform(0.8, 0.95)])
        voice = _voice(f0, VOWELS["a"], rate, rng, breathiness=rng.uniform(0.3, 0.6))
        parts += [
            voice * _envelope(n, rate, 0.01, 0.05) * (1 - 0.5 * k / count),
            np.zeros(int(rng.uniform(0.05, 0.12) * rate)),
        ]
    return _level(np.concatenate(parts), rng)


def _tone(freq: npt.ArrayLike, n: int, rate: int, timbre: str, rng: np.random.Generator) -> npt.NDArray[np.float64]:
    f = np.broadcast_to(np.asarray(freq, dtype=np.float64), (n,))
    phase = 2 * np.pi * np.cumsum(f) / rate
    if timbre == "square":
        return np.tanh(4 * np.sin(phase))
    if timbre == "triangle":
        return np.asarray(2 / np.pi * np.arcsin(np.sin(phase)))
    if timbre == "fm":
        return np.sin(phase + rng.uniform(0.5, 3.0) * np.sin(rng.uniform(1, 4) * phase))
    if timbre == "bell":
        decay = np.exp(-np.arange(n) / rate / rng.uniform(0.05, 0.4))
        return decay * (np.sin(phase) + 0.5 * np.sin(2.76 * phase) + 0.25 * np.sin(5.4 * phase))
    return np.sin(phase)


def ringtone(rate: int, rng: np.random.Generator) -> FloatArray:
    """A melody from a random scale with a random timbre, in a repeated rhythm."""
    timbre = str(rng.choice(["sine", "square", "triangle", "fm", "bell"]))
    root = rng.uniform(400, 1400)
    scale = np.array([0, 2, 4, 5, 7, 9, 11, 12])
    notes = root * 2 ** (rng.choice(scale, size=int(rng.integers(3, 8))) / 12)
    durations = rng.choice([0.08, 0.12, 0.16, 0.25], size=notes.size)
    phrase = []
    for freq, duration in zip(notes, durations, strict=True):
        n = int(duration * rate)
        phrase += [_tone(freq, n, rate, timbre, rng) * _envelope(n, rate, 0.005, 0.02), np.zeros(int(0.02 * rate))]
    phrase.append(np.zeros(int(rng.uniform(0.1, 0.6) * rate)))
    return _level(np.tile(np.concatenate(phrase), int(rng.integers(1, 4))), rng)


def alarm(rate: int, rng: np.random.Generator) -> FloatArray:
    """Beeps (smoke alarm, reversing truck, clock) or a siren sweeping up and down."""
    kind = str(rng.choice(["beeps", "siren", "chirps"]))
    seconds = rng.uniform(1.0, 3.0)
    n = int(seconds * rate)
    t = np.arange(n) / rate
    if kind == "siren":
        low, high = rng.uniform(400, 800), rng.uniform(1000, 1800)
        sweep = rng.uniform(0.3, 3.0)
        freq = low + (high - low) * (0.5 - 0.5 * np.cos(2 * np.pi * t / sweep))
        sound = _tone(freq, n, rate, str(rng.choice(["sine", "square", "triangle"])), rng)
    elif kind == "chirps":
        period = rng.uniform(0.2, 0.8)
        local = (t % period) / period
        freq = rng.uniform(1500, 3000) * (1 + rng.uniform(0.2, 1.0) * local)
        sound = _tone(freq, n, rate, "sine", rng) * _smooth_gate(local < rng.uniform(0.2, 0.6), rate)
    else:
        on, off = rng.uniform(0.05, 0.5), rng.uniform(0.05, 0.5)
        gate = (t % (on + off)) < on
        sound = _tone(rng.uniform(2000, 4200), n, rate, str(rng.choice(["square", "sine", "fm"])), rng)
        sound = sound * _smooth_gate(gate, rate)
    return _level(sound, rng)


def _smooth_gate(gate: npt.NDArray[np.bool_], rate: int) -> npt.NDArray[np.float64]:
    """An on/off gate with 4 ms ramps, so beeps start and stop without clicks."""
    ramp = np.hanning(max(3, int(0.008 * rate)))
    return np.convolve(gate.astype(np.float64), ramp / ramp.sum(), mode="same")


def _level(x: npt.NDArray[np.float64], rng: np.random.Generator) -> FloatArray:
    """Peak at a random -30 to -3 dBFS (augmentation sets the final gain)."""
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if peak <= 0:
        return np.zeros(x.size, dtype=np.float32)
    return np.asarray(x / peak * 10 ** (rng.uniform(-30, -3) / 20), dtype=np.float32)


VOCAL = {
    "breath": breath,
    "sigh": sigh,
    "moan": moan,
    "yawn": yawn,
    "panting": panting,
    "gasp": gasp,
    "grunt": grunt,
    "sobbing": sobbing,
    "laughter": laughter,
}
TONAL = {"ringtone": ringtone, "alarm": alarm}
FAMILIES: dict[str, Generator] = {**VOCAL, **TONAL}


def sound(family: str, rate: int, rng: np.random.Generator) -> FloatArray:
    """One sound of `family` (a key of FAMILIES) at `rate` Hz, drawn from `rng`."""
    try:
        generator = FAMILIES[family]
    except KeyError:
        raise ValueError(f"unknown procedural family {family!r}; known: {', '.join(FAMILIES)}") from None
    return generator(rate, rng)


def write_examples(out: Path, *, per_family: int = 3, rate: int = 16000, seed: int = 0) -> list[Path]:
    from edge.audio import write_wav

    out.mkdir(parents=True, exist_ok=True)
    written = []
    for family in FAMILIES:
        for k in range(per_family):
            path = out / f"{family}-{k}.wav"
            write_wav(path, sound(family, rate, np.random.default_rng([seed, k, len(written)])), rate)
            written.append(path)
    return written


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="write examples of every procedural negative family")
    parser.add_argument("--out", required=True)
    parser.add_argument("--per-family", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    cli = parser.parse_args()
    for path in write_examples(Path(cli.out), per_family=cli.per_family, seed=cli.seed):
        print(path)
