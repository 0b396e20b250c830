"""Spoken negatives (train/spoken.py): espeak-ng really runs; seeded, deterministic, levelled, and
drawn into the training batches only when asked for; a missing or failing espeak-ng is named."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import require_program
from tests.train.negative_pools import assert_pool_drawn_only_when_asked
from train import spoken


@pytest.fixture(autouse=True)
def _espeak() -> None:
    require_program("espeak-ng")


def test_sounds_are_seeded_levelled_speech() -> None:
    sounds = spoken.pool(12, 16000, seed=3)
    again = spoken.pool(12, 16000, seed=3)
    for a, b in zip(sounds, again, strict=True):
        np.testing.assert_array_equal(a, b)  # the same seed, the same samples
        assert a.dtype == np.float32 and np.all(np.isfinite(a))
        assert 0.05 * 16000 <= a.size <= 8 * 16000
        peak = float(np.max(np.abs(a)))
        assert 10 ** (-30.5 / 20) <= peak <= 10 ** (-2.9 / 20)  # peaks at -30 to -3 dBFS
        # Silence trimmed: sound within 20 ms of both ends (the resampler's filter smears the cut).
        assert min(np.max(np.abs(a[:320])), np.max(np.abs(a[-320:]))) >= 0.009 * peak
    assert len({a.tobytes() for a in sounds}) == 12
    other = spoken.pool(12, 16000, seed=4)
    assert not any(np.array_equal(a, b) for a, b in zip(sounds, other, strict=True))


def test_say_is_voiced_speech_at_the_model_rate() -> None:
    """A held 'aaah' at espeak-ng's lowest and highest pitch: voiced (a clear fundamental), the high
    one higher, resampled from espeak-ng's 22.05 kHz to the rate asked for."""

    def fundamental(x: np.ndarray, rate: int) -> float:
        x = x - x.mean()
        corr = np.correlate(x[:4000], x[:4000], "full")[3999:]
        lo, hi = rate // 500, rate // 60
        return rate / (lo + int(np.argmax(corr[lo:hi])))

    low = spoken.say("aaaaah", "en-us+m3", pitch=0, speed=120, gap=0, rate=16000)
    high = spoken.say("aaaaah", "en-us+m3", pitch=99, speed=120, gap=0, rate=16000)
    assert fundamental(high, 16000) > 1.3 * fundamental(low, 16000)
    slow = spoken.say("aaaaah", "en-us+m3", pitch=50, speed=80, gap=0, rate=8000)
    fast = spoken.say("aaaaah", "en-us+m3", pitch=50, speed=80, gap=0, rate=16000)
    assert abs(fast.size - 2 * slow.size) <= 4


def test_a_failing_missing_or_short_espeak_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    spoken.check_voices()  # Debian's espeak-ng-data has every voice the pool uses
    monkeypatch.setattr(spoken, "VOICES", (*spoken.VOICES, "no-such-variant"))
    with pytest.raises(spoken.SpokenError, match=r"espeak-ng \(eSpeak NG.*\) lacks variant no-such-variant$"):
        spoken.pool(1, 16000, seed=0)
    monkeypatch.undo()
    broken = tmp_path / "espeak-broken"
    broken.write_text("#!/bin/sh\necho 'cannot open audio data' >&2\nexit 1\n")
    broken.chmod(0o755)
    monkeypatch.setattr(spoken, "ESPEAK", str(broken))
    with pytest.raises(spoken.SpokenError, match=r"espeak-broken -v en-us\+m1 .* aah: cannot open audio data"):
        spoken.say("aah", "en-us+m1", pitch=50, speed=150, gap=0, rate=16000)
    monkeypatch.setattr(spoken, "ESPEAK", "espeak-ng-not-installed")
    with pytest.raises(spoken.SpokenError, match="Debian package espeak-ng"):
        spoken.pool(1, 16000, seed=0)


def test_batches_draw_spoken_negatives_only_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    assert_pool_drawn_only_when_asked(monkeypatch, spoken, "spoken", 9)


def test_the_cli_checks_the_share_and_espeak_before_reading_data(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from edge.cli import EXIT_FATAL, main
    from train.cli import fraction

    assert fraction("0.1") == 0.1
    with pytest.raises(argparse.ArgumentTypeError, match=r"from 0 to 1, got 1\.5"):
        fraction("1.5")
    monkeypatch.setattr(spoken, "ESPEAK", "espeak-ng-not-installed")
    for command in ("train", "crossval"):
        code = main([command, "--data", "/nowhere/at/all", "--out", f"{tmp_path}/m", "--spoken-fraction", "0.1"])
        assert code == EXIT_FATAL
        err = capsys.readouterr().err
        assert "apt install espeak-ng" in err and "/nowhere" not in err
