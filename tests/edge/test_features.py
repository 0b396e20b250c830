from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from edge.audio import open_audio
from edge.errors import ModelError
from edge.features import FeatureParams, LogMelExtractor, StreamingLogMel, mel_filterbank

DATA = Path(__file__).resolve().parents[1] / "data"


def test_params_are_frozen_and_keyword_only() -> None:
    params = FeatureParams()
    with pytest.raises(dataclasses.FrozenInstanceError):
        params.mel_bands = 64  # type: ignore[misc]
    with pytest.raises(TypeError):
        FeatureParams(16000)  # type: ignore[misc]


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"fft_size": 256}, "fft_size"),
        ({"fmax_hz": 9000.0}, "Nyquist"),
        ({"hop_ms": 0.0}, "hop_ms"),
        ({"sample_rate_hz": 100}, "sample_rate_hz"),
    ],
)
def test_invalid_params_are_rejected_by_name(kwargs: dict[str, float], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        FeatureParams(**kwargs)  # type: ignore[arg-type]


# Each range's edges: the last value accepted and the first refused, on both sides.
@pytest.mark.parametrize(
    "kwargs",
    [
        {"sample_rate_hz": 4000, "fmin_hz": 0.0, "fmax_hz": 2000.0, "window_ms": 25.0},
        {"sample_rate_hz": 192000, "fft_size": 8192},
        {"window_ms": 1.0, "hop_ms": 1.0, "fft_size": 16},  # 16 samples, fft == window, hop == window
        {"hop_ms": 0.0625},  # one sample
        {"fmin_hz": 0.0, "fmax_hz": 8000.0},  # 0 and Nyquist themselves
        {"mel_bands": 1},
        {"log_offset": 1e-30},
    ],
)
def test_params_on_the_edge_of_each_range_are_accepted(kwargs: dict[str, float]) -> None:
    FeatureParams(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"sample_rate_hz": 3999, "fmax_hz": 1999.0}, "sample_rate_hz=3999 is outside 4000..192000"),
        ({"sample_rate_hz": 192001, "fft_size": 8192}, "sample_rate_hz=192001 is outside 4000..192000"),
        ({"window_ms": 0.9375, "hop_ms": 0.5}, "window_ms=0.9375 gives fewer than 16 samples"),
        ({"fft_size": 399}, "fft_size=399 is smaller than the window (400 samples)"),
        ({"hop_ms": 0.03}, "hop_ms=0.03 must give 1..window samples"),
        ({"hop_ms": 25.0625}, "hop_ms=25.0625 must give 1..window samples"),
        ({"fmin_hz": -1.0}, "band edges -1.0..7600.0 Hz must satisfy 0 <= fmin < fmax <= Nyquist"),
        ({"fmin_hz": 500.0, "fmax_hz": 500.0}, "band edges 500.0..500.0 Hz must satisfy 0 <= fmin < fmax <= Nyquist"),
        ({"fmax_hz": 8000.5}, "band edges 60.0..8000.5 Hz must satisfy 0 <= fmin < fmax <= Nyquist"),
        ({"mel_bands": 0}, "mel_bands=0 must be positive"),
        ({"log_offset": 0.0}, "log_offset=0.0 must be positive"),
    ],
)
def test_params_just_outside_each_range_are_refused_with_the_rule(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError) as caught:
        FeatureParams(**kwargs)  # type: ignore[arg-type]
    assert str(caught.value) == "invalid feature parameters: " + message


def test_every_problem_is_named_at_once() -> None:
    with pytest.raises(ValueError) as caught:
        FeatureParams(mel_bands=0, log_offset=-1.0)
    assert str(caught.value) == (
        "invalid feature parameters: mel_bands=0 must be positive; log_offset=-1.0 must be positive"
    )


def test_from_dict_names_unknown_missing_and_invalid_settings() -> None:
    good = FeatureParams().to_dict()
    with pytest.raises(ModelError) as caught:
        FeatureParams.from_dict({**good, "zeta": 1, "alpha": 2})
    assert str(caught.value) == "unknown feature parameters: alpha, zeta"
    partial = {k: v for k, v in good.items() if k not in ("mel_bands", "fft_size")}
    with pytest.raises(ModelError) as caught:
        FeatureParams.from_dict(partial)
    assert str(caught.value) == "feature parameters missing: fft_size, mel_bands"
    with pytest.raises(ModelError) as caught:
        FeatureParams.from_dict({**good, "mel_bands": 0})
    assert str(caught.value) == "invalid feature parameters: mel_bands=0 must be positive"
    with pytest.raises(ModelError) as caught:
        FeatureParams.from_dict({**good, "mel_bands": None})
    assert "'<' not supported" in str(caught.value)


def test_contract_hash_is_stable_and_sensitive() -> None:
    # Pinned: a change here means every shipped model's sidecar no longer matches.
    assert FeatureParams().contract_hash == "0fbb034ae0e6c343"
    assert FeatureParams(mel_bands=64).contract_hash != FeatureParams().contract_hash
    assert FeatureParams.from_dict(FeatureParams().to_dict()) == FeatureParams()


def test_golden_vectors_from_checked_in_generator() -> None:
    golden = np.load(DATA / "golden_features.npz")
    assert str(golden["contract_hash"]) == FeatureParams().contract_hash
    samples = open_audio(DATA / "golden.wav").read_all()
    features = LogMelExtractor(FeatureParams()).compute(samples)
    # float32 FFT and matrix products may round differently across CPUs and BLAS builds.
    np.testing.assert_allclose(features, golden["features"], atol=1e-4, rtol=0)


def test_frame_count_and_shape() -> None:
    params = FeatureParams()
    extractor = LogMelExtractor(params)
    assert extractor.compute(np.zeros(399)).shape == (0, 40)
    assert extractor.compute(np.zeros(400)).shape == (1, 40)
    assert extractor.compute(np.zeros(16000)).shape == (params.frame_count(16000), 40) == (98, 40)


@pytest.mark.parametrize("chunk", [1, 7, 160, 401, 1000, 4096, 16000])
def test_streaming_equals_batch(chunk: int) -> None:
    params = FeatureParams()
    seconds = 0.4 if chunk < 100 else 2.3  # sample by sample, 37 frames are as telling as 228
    signal = np.random.default_rng(3).standard_normal(int(seconds * params.sample_rate_hz)).astype(np.float32) * 0.1
    batch = LogMelExtractor(params).compute(signal)
    stream = StreamingLogMel(params)
    parts = [stream.push(signal[i : i + chunk]) for i in range(0, signal.size, chunk)]
    streamed = np.concatenate(parts)
    assert streamed.shape == batch.shape
    # Same arithmetic per frame; only BLAS blocking of the mel product can differ in the last bit.
    np.testing.assert_allclose(streamed, batch, atol=1e-5, rtol=0)
    assert stream.frames_emitted == batch.shape[0]


def test_streaming_computes_only_new_frames() -> None:
    params = FeatureParams()
    stream = StreamingLogMel(params)
    assert stream.push(np.zeros(399)).shape[0] == 0
    assert stream.push(np.zeros(1)).shape[0] == 1
    assert stream.push(np.zeros(159)).shape[0] == 0
    assert stream.push(np.zeros(1)).shape[0] == 1


def test_filterbank_matches_tf_signal() -> None:
    tf = pytest.importorskip("tensorflow")
    params = FeatureParams()
    reference = tf.signal.linear_to_mel_weight_matrix(
        params.mel_bands, params.fft_size // 2 + 1, params.sample_rate_hz, params.fmin_hz, params.fmax_hz
    ).numpy()
    # TF builds the matrix in float32 (we build in float64 and round once).
    np.testing.assert_allclose(mel_filterbank(params), reference, atol=1e-5)


def test_log_mel_matches_tf_signal_reference() -> None:
    tf = pytest.importorskip("tensorflow")
    params = FeatureParams()
    signal = np.random.default_rng(5).standard_normal(params.sample_rate_hz * 3).astype(np.float32) * 0.2
    stft = tf.signal.stft(
        signal,
        frame_length=params.window_samples,
        frame_step=params.hop_samples,
        fft_length=params.fft_size,
        window_fn=tf.signal.hann_window,
    )
    weights = tf.signal.linear_to_mel_weight_matrix(
        params.mel_bands, params.fft_size // 2 + 1, params.sample_rate_hz, params.fmin_hz, params.fmax_hz
    )
    reference = tf.math.log(tf.matmul(tf.abs(stft) ** 2, weights) + params.log_offset).numpy()
    ours = LogMelExtractor(params).compute(signal)
    assert ours.shape == reference.shape
    # Both are float32 pipelines with different FFT libraries (pocketfft vs Eigen); TOOLCHAIN.md
    # measured about 1e-4 on log-mel, so 1e-3 leaves room for platform rounding and nothing more.
    assert np.max(np.abs(ours - reference)) < 1e-3


@pytest.mark.parametrize(("amplitude", "dbfs"), [(1.0, 0.0), (0.5, -6.0206), (0.1, -20.0), (0.01, -40.0)])
def test_window_level_is_db_relative_to_a_full_scale_sine(amplitude: float, dbfs: float) -> None:
    """The loudness gate's level: 20 log10 of the amplitude for a 1 kHz sine, whatever the window's length."""
    from edge.features import full_scale_reference, window_level_dbfs

    params = FeatureParams()
    reference = full_scale_reference(params)
    t = np.arange(params.sample_rate_hz) / params.sample_rate_hz
    frames = LogMelExtractor(params).compute(amplitude * np.sin(2 * np.pi * 1000.0 * t))
    assert window_level_dbfs(frames, params, reference) == pytest.approx(dbfs, abs=0.01)
    assert window_level_dbfs(frames[10:30], params, reference) == pytest.approx(dbfs, abs=0.01)
    # The reference itself: the mean over frames of the mel power summed over bands, offset removed.
    full = LogMelExtractor(params).compute(np.sin(2 * np.pi * 1000.0 * t))
    assert reference == pytest.approx(float(np.mean(np.sum(np.exp(full) - params.log_offset, axis=1))), rel=1e-9)
    assert reference > 1.0


def test_silence_is_at_the_level_floor_not_minus_infinity() -> None:
    from edge.features import full_scale_reference, window_level_dbfs

    params = FeatureParams()
    reference = full_scale_reference(params)
    silent = LogMelExtractor(params).compute(np.zeros(8000))
    level = window_level_dbfs(silent, params, reference)
    assert np.isfinite(level) and level == pytest.approx(10 * np.log10(1e-20 / reference), abs=1e-6)
    assert window_level_dbfs(silent, params, reference * 10) == pytest.approx(level - 10.0, abs=1e-6)


def test_reset_forgets_the_pending_samples_and_the_frame_count() -> None:
    """After a reset (a reopened device) the stream starts over: what was pending is not prepended."""
    params = FeatureParams()
    rng = np.random.default_rng(5)
    before, after = (rng.standard_normal(n).astype(np.float32) * 0.1 for n in (300, 560))
    stream = StreamingLogMel(params)
    assert stream.push(before).shape[0] == 0
    stream.push(np.zeros(500, np.float32))
    stream.push(before)
    stream.reset()
    assert stream.frames_emitted == 0
    frames = stream.push(after)
    np.testing.assert_allclose(frames, LogMelExtractor(params).compute(after), atol=1e-5, rtol=0)
    assert frames.shape[0] == stream.frames_emitted == params.frame_count(560) == 2


def test_the_feature_contract_is_float32_whatever_comes_in() -> None:
    """Training, the edge and the golden vectors all see float32 frames and a float32 filterbank."""
    params = FeatureParams()
    extractor = LogMelExtractor(params)
    signal = np.random.default_rng(7).standard_normal(4000) * 0.1
    for samples in (signal, signal.astype(np.float32), np.zeros(100)):
        assert extractor.compute(samples).dtype == np.float32
    assert mel_filterbank(params).dtype == np.float32
    stream = StreamingLogMel(params)
    assert stream.push(signal).dtype == np.float32


def test_the_mel_scale_is_htks() -> None:
    from edge.features import hz_to_mel

    assert hz_to_mel(700.0) == pytest.approx(1127.0 * np.log(2.0), rel=1e-12)
    assert hz_to_mel(np.float32(1000.0)).dtype == np.float64  # band edges in double precision


def test_long_signals_are_computed_block_by_block_like_short_ones() -> None:
    """Past 256 frames the extractor works in blocks; each block's frames equal those of its own audio."""
    params = FeatureParams()
    signal = np.random.default_rng(11).standard_normal(6 * params.sample_rate_hz).astype(np.float32) * 0.1
    whole = LogMelExtractor(params).compute(signal)
    assert whole.shape == (params.frame_count(signal.size), 40) and whole.shape[0] > 2 * 256
    stream = StreamingLogMel(params)
    pieces = np.concatenate([stream.push(signal[i : i + 1000]) for i in range(0, signal.size, 1000)])
    np.testing.assert_allclose(whole, pieces, atol=1e-5, rtol=0)


def test_only_mono_audio_is_accepted_and_a_one_channel_column_is_mono() -> None:
    params = FeatureParams()
    with pytest.raises(ValueError, match=r"expected mono samples \(1-D\), got shape \(800, 2\)"):
        LogMelExtractor(params).compute(np.zeros((800, 2), np.float32))
    column = np.random.default_rng(2).standard_normal((1600, 1)).astype(np.float32)
    np.testing.assert_array_equal(StreamingLogMel(params).push(column), LogMelExtractor(params).compute(column[:, 0]))
