"""Waveform and spectrogram augmentation for real microphones and rooms (numpy and scipy)."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import signal

FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True, kw_only=True)
class AugmentParams:
    gain_db: tuple[float, float] = (-40.0, 6.0)
    background_probability: float = 0.5
    background_snr_db: tuple[float, float] = (0.0, 20.0)
    noise_probability: float = 0.5
    noise_snr_db: tuple[float, float] = (5.0, 35.0)
    bandlimit_probability: float = 0.35
    reverb_probability: float = 0.4
    # A preamp clipping, peaks driven this far over full scale. Off: trained with 0.1, it let more
    # overdriven non-screams fire on validation, not fewer (11 -> 22 of 316).
    overdrive_probability: float = 0.0
    overdrive_db: tuple[float, float] = (6.0, 20.0)
    rt60_s: tuple[float, float] = (0.15, 0.9)
    # Speed (and with it pitch) of recorded clips, both classes: other voices, other vocal tracts.
    # On validation (scream-v5 against v4) window recall at 1% FPR rose 0.595 -> 0.720.
    speed_probability: float = 0.5
    speed_range: tuple[float, float] = (0.85, 1.18)
    specaugment_probability: float = 0.5
    time_masks: int = 2
    time_mask_frames: int = 10
    freq_masks: int = 2
    freq_mask_bands: int = 5


def colored_noise(n: int, color: str, rate_hz: int, rng: np.random.Generator) -> FloatArray:
    """Unit-RMS white, pink or brown noise, or mains hum (50 or 60 Hz with harmonics)."""
    if color == "hum":
        t = np.arange(n) / rate_hz
        mains = rng.choice([50.0, 60.0])
        out = sum(
            rng.uniform(0.1, 1.0) / k * np.sin(2 * np.pi * mains * k * t + rng.uniform(0, 6.3)) for k in (1, 2, 3, 5)
        )
        out = np.asarray(out) + 0.05 * rng.standard_normal(n)
    else:
        spectrum = np.fft.rfft(rng.standard_normal(n))
        freqs = np.fft.rfftfreq(n, 1.0 / rate_hz)
        freqs[0] = freqs[1] if n > 1 else 1.0
        exponent = {"white": 0.0, "pink": 0.5, "brown": 1.0}[color]
        out = np.fft.irfft(spectrum / freqs**exponent, n)
    return (out / (np.sqrt(np.mean(out**2)) + 1e-12)).astype(np.float32)


def _rms(x: FloatArray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)) + 1e-12))


def mix_at_snr(foreground: FloatArray, background: FloatArray, snr_db: float) -> FloatArray:
    scale = _rms(foreground) / (_rms(background) * 10 ** (snr_db / 20))
    return (foreground + scale * background).astype(np.float32)


@functools.lru_cache(maxsize=16)
def _butterworth(order: int, edges_hz: float | tuple[float, float], btype: str, rate_hz: int) -> FloatArray:
    """Second-order sections of a Butterworth filter. Designing one costs about 1.4 ms, more than
    filtering a window with it, so repeated designs (the telephone band) are kept. sosfilt needs a
    writable array and does not write to it."""
    return signal.butter(order, edges_hz, btype=btype, fs=rate_hz, output="sos")  # type: ignore[no-any-return]


def telephone_band(x: FloatArray, rate_hz: int) -> FloatArray:
    """The telephone band, 300-3400 Hz."""
    return signal.sosfilt(_butterworth(6, (300, 3400), "bandpass", rate_hz), x).astype(np.float32)


def lowpass(x: FloatArray, rate_hz: int, cutoff_hz: float) -> FloatArray:
    return signal.sosfilt(_butterworth(8, float(cutoff_hz), "lowpass", rate_hz), x).astype(np.float32)


def bandlimit(x: FloatArray, rate_hz: int, rng: np.random.Generator) -> FloatArray:
    """Telephone band (300-3400 Hz) or a random low-pass, so bandwidth is never a cue."""
    if rng.random() < 0.4:
        return telephone_band(x, rate_hz)
    return lowpass(x, rate_hz, rng.uniform(2500, min(6500, rate_hz / 2 - 200)))


def reverberate(x: FloatArray, rate_hz: int, rng: np.random.Generator, rt60_s: float) -> FloatArray:
    """Convolve with a synthetic room: a direct path plus exponentially decaying noise."""
    n = int(rt60_s * rate_hz)
    t = np.arange(n) / rate_hz
    tail = rng.standard_normal(n) * np.exp(-6.9 * t / rt60_s)  # -60 dB at rt60
    tail[: int(0.002 * rate_hz)] = 0.0
    rir = tail * rng.uniform(0.2, 0.8) / (np.sqrt(np.sum(tail**2)) + 1e-12)
    rir[0] = 1.0
    wet = signal.fftconvolve(x, rir)[: x.size]
    return (wet * _rms(x) / _rms(wet.astype(np.float32))).astype(np.float32)


def change_speed(x: FloatArray, length: int) -> FloatArray:
    """`x` played back to fill `length` samples (faster and higher when `x` is longer), by linear
    interpolation: cheap, and its slight low-pass is below what the band-limiting already does."""
    if x.size == length:
        return x
    return np.interp(np.linspace(0.0, x.size - 1, length), np.arange(x.size), x).astype(np.float32)


def overdrive(x: FloatArray, over_db: float) -> FloatArray:
    """A preamp driven `over_db` past full scale: the peak is scaled there and clipped."""
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if peak < 1e-6:
        return x
    return np.clip(x * np.float32(10 ** (over_db / 20) / peak), -1.0, 1.0).astype(np.float32)


def augment_waveform(
    x: FloatArray,
    rate_hz: int,
    rng: np.random.Generator,
    params: AugmentParams,
    backgrounds: list[FloatArray],
) -> FloatArray:
    """One random chain: reverb, band limit, background, noise, overdrive, gain; clipped like a real ADC."""
    y = x.astype(np.float32, copy=True)
    if rng.random() < params.reverb_probability:
        y = reverberate(y, rate_hz, rng, rng.uniform(*params.rt60_s))
    if rng.random() < params.bandlimit_probability:
        y = bandlimit(y, rate_hz, rng)
    if backgrounds and rng.random() < params.background_probability:
        bg = backgrounds[rng.integers(len(backgrounds))]
        if bg.size > y.size:
            start = rng.integers(bg.size - y.size + 1)
            bg = bg[start : start + y.size]
        else:
            bg = np.pad(bg, (0, y.size - bg.size), mode="wrap")
        if _rms(bg) > 1e-4:
            y = mix_at_snr(y, bg, rng.uniform(*params.background_snr_db))
    if rng.random() < params.noise_probability:
        color = str(rng.choice(["white", "pink", "brown", "hum"]))
        y = mix_at_snr(y, colored_noise(y.size, color, rate_hz, rng), rng.uniform(*params.noise_snr_db))
    if rng.random() < params.overdrive_probability:
        y = overdrive(y, rng.uniform(*params.overdrive_db))
    y *= 10 ** (rng.uniform(*params.gain_db) / 20)
    return np.clip(y, -1.0, 1.0).astype(np.float32)


def spec_augment(features: FloatArray, rng: np.random.Generator, params: AugmentParams) -> FloatArray:
    """Time and frequency masks, filled with the window's mean so no new edge appears."""
    if rng.random() >= params.specaugment_probability:
        return features
    out = features.copy()
    fill = float(out.mean())
    frames, bands = out.shape
    for _ in range(params.time_masks):
        width = int(rng.integers(0, params.time_mask_frames + 1))
        start = int(rng.integers(0, max(frames - width, 1)))
        out[start : start + width] = fill
    for _ in range(params.freq_masks):
        width = int(rng.integers(0, params.freq_mask_bands + 1))
        start = int(rng.integers(0, max(bands - width, 1)))
        out[:, start : start + width] = fill
    return out
