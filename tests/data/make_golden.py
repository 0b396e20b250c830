"""Regenerate tests/data/golden.wav and golden_features.npz (the feature contract's golden vectors).

Run only when the feature algorithm changes on purpose (and bump FEATURE_ALGORITHM_VERSION):
    python tests/data/make_golden.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge.audio import open_audio, write_wav
from edge.features import FeatureParams, LogMelExtractor

OUT = Path(__file__).resolve().parent


def golden_signal(rate_hz: int) -> np.ndarray:
    """0.5 s: a chirp from 200 Hz to 6 kHz, a 1 kHz tone burst and seeded noise."""
    t = np.arange(int(0.5 * rate_hz)) / rate_hz
    chirp = 0.3 * np.sin(2 * np.pi * (200 * t + (6000 - 200) / (2 * 0.5) * t**2))
    burst = 0.2 * np.sin(2 * np.pi * 1000 * t) * ((t > 0.2) & (t < 0.3))
    noise = 0.01 * np.random.default_rng(1234).standard_normal(t.size)
    return (chirp + burst + noise).astype(np.float32)


def main() -> None:
    params = FeatureParams()
    OUT.mkdir(parents=True, exist_ok=True)
    wav = OUT / "golden.wav"
    write_wav(wav, golden_signal(params.sample_rate_hz), params.sample_rate_hz)
    samples = open_audio(wav).read_all()  # features of the 16-bit file as stored
    features = LogMelExtractor(params).compute(samples)
    np.savez_compressed(OUT / "golden_features.npz", features=features, contract_hash=params.contract_hash)
    print(f"wrote {wav} and golden_features.npz: {features.shape}, contract {params.contract_hash}")


if __name__ == "__main__":
    main()
