"""Synthetic sounds for the demo and the tests (numpy only, seeded, no recorded audio).

These are crude stand-ins, never training data for a shipped model: room tone, speech-like
babble (voiced pulses through moving formants), an alarm-like beep and a scream-like sound
(a loud, high, rough harmonic voice with vibrato).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]


def room_tone(duration_s: float, rate_hz: int, rng: np.random.Generator, *, level: float = 0.003) -> FloatArray:
    """Pink-ish noise plus a little mains hum, as a quiet room through a cheap microphone."""
    n = int(duration_s * rate_hz)
    white = rng.standard_normal(n)
    spectrum = np.fft.rfft(white)
    freqs = np.fft.rfftfreq(n, 1 / rate_hz)
    spectrum[1:] /= np.sqrt(freqs[1:])
    spectrum[0] = 0
    pink = np.fft.irfft(spectrum, n)
    pink /= np.std(pink) + 1e-12
    t = np.arange(n) / rate_hz
    hum = 0.3 * np.sin(2 * np.pi * 50 * t) + 0.1 * np.sin(2 * np.pi * 150 * t)
    return (level * (pink + hum)).astype(np.float32)


def _harmonic_voice(
    f0_hz: npt.NDArray[np.float64],
    rate_hz: int,
    formants_hz: Sequence[float],
    bandwidth_hz: float,
    rng: np.random.Generator,
    roughness: float,
) -> npt.NDArray[np.float64]:
    phase = 2 * np.pi * np.cumsum(f0_hz) / rate_hz
    n_harmonics = int(min(40, (rate_hz / 2) / max(float(f0_hz.min()), 50.0)))
    out = np.zeros(f0_hz.size)
    for k in range(1, n_harmonics + 1):
        freq = k * f0_hz
        gain = sum(1.0 / (1.0 + ((freq - fm) / bandwidth_hz) ** 2) for fm in formants_hz)
        gain = np.where(freq < rate_hz / 2, gain, 0.0)
        out += gain * np.sin(k * phase + rng.uniform(0, 2 * np.pi)) / k**0.5
    out += roughness * rng.standard_normal(f0_hz.size) * np.abs(out).mean()
    return out


def speech_like(duration_s: float, rate_hz: int, rng: np.random.Generator, *, level: float = 0.05) -> FloatArray:
    """Syllables of a low voice (100-220 Hz) through moving vowel formants, with pauses."""
    n = int(duration_s * rate_hz)
    out = np.zeros(n)
    pos = 0
    vowels = [[700, 1200, 2600], [300, 2300, 3000], [500, 900, 2400], [400, 2000, 2600]]
    while pos < n:
        syllable = int(rng.uniform(0.12, 0.3) * rate_hz)
        end = min(pos + syllable, n)
        length = end - pos
        f0 = rng.uniform(100, 220) * (1 + 0.1 * np.linspace(0.5, -0.5, length))
        voice = _harmonic_voice(f0, rate_hz, vowels[rng.integers(len(vowels))], 120.0, rng, 0.05)
        out[pos:end] = voice * np.hanning(length)
        pos = end + int(rng.uniform(0.03, 0.25) * rate_hz)
    out /= np.abs(out).max() + 1e-12
    return np.asarray(level * out, dtype=np.float32)


def scream_like(duration_s: float, rate_hz: int, rng: np.random.Generator, *, level: float = 0.5) -> FloatArray:
    """A loud, high (700-1400 Hz), rough voice with vibrato and a fast attack."""
    n = int(duration_s * rate_hz)
    t = np.arange(n) / rate_hz
    base = rng.uniform(700, 1400)
    f0 = base * (1 + 0.15 * np.sin(np.pi * t / duration_s)) * (1 + 0.03 * np.sin(2 * np.pi * 6 * t))
    voice = _harmonic_voice(f0, rate_hz, [1100, 2800, 3600], 400.0, rng, 0.4)
    attack = np.minimum(1.0, t / 0.05)
    release = np.minimum(1.0, (duration_s - t) / 0.15)
    out = voice * attack * np.clip(release, 0, 1)
    out /= np.abs(out).max() + 1e-12
    return np.asarray(level * out, dtype=np.float32)


def alarm_like(duration_s: float, rate_hz: int, rng: np.random.Generator, *, level: float = 0.2) -> FloatArray:
    """A square-ish two-tone beep, like a smoke alarm or a phone."""
    n = int(duration_s * rate_hz)
    t = np.arange(n) / rate_hz
    freq = rng.uniform(2000, 3500)
    gate = (np.floor(t * 4) % 2 == 0).astype(np.float64)
    tone = np.sign(np.sin(2 * np.pi * freq * t)) * 0.6 + np.sin(2 * np.pi * freq * 1.5 * t) * 0.4
    return np.asarray(level * tone * gate, dtype=np.float32)


@dataclass(frozen=True)
class SceneEvent:
    kind: str
    start_s: float
    end_s: float


def demo_scene(rate_hz: int = 16000, *, seed: int = 7) -> tuple[FloatArray, list[SceneEvent]]:
    """Twenty seconds of a room: talk, a beep, a scream, more talk. Returns audio and truth."""
    rng = np.random.default_rng(seed)
    total_s = 20.0
    audio = room_tone(total_s, rate_hz, rng)
    truth = []
    for kind, start_s, duration_s, make in (
        ("speech", 1.0, 4.0, speech_like),
        ("alarm", 6.5, 1.5, alarm_like),
        ("scream", 10.0, 1.6, scream_like),
        ("speech", 14.0, 4.5, speech_like),
    ):
        clip = make(duration_s, rate_hz, rng)
        i = int(start_s * rate_hz)
        audio[i : i + clip.size] += clip
        truth.append(SceneEvent(kind, start_s, start_s + duration_s))
    return np.clip(audio, -1.0, 1.0).astype(np.float32), truth
