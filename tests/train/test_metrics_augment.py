from __future__ import annotations

import numpy as np
import pytest

from train import metrics
from train.augment import (
    AugmentParams,
    augment_waveform,
    bandlimit,
    colored_noise,
    mix_at_snr,
    overdrive,
    spec_augment,
)


def test_roc_auc_and_average_precision_on_known_cases() -> None:
    labels = [0, 0, 1, 1]
    assert metrics.roc_auc(labels, [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    assert metrics.roc_auc(labels, [0.1, 0.2, 0.3, 0.4]) == pytest.approx(1.0)
    assert metrics.average_precision(labels, [0.1, 0.4, 0.35, 0.8]) == pytest.approx((1 + 2 / 3) / 2)


def test_threshold_at_fpr_and_recall() -> None:
    rng = np.random.default_rng(0)
    neg, pos = rng.uniform(0, 0.7, 1000), rng.uniform(0.5, 1, 1000)
    labels = np.r_[np.zeros(1000), np.ones(1000)]
    scores = np.r_[neg, pos]
    t = metrics.threshold_at_fpr(labels, scores, 0.01)
    assert np.mean(neg >= t) <= 0.01 and np.mean(neg >= t - 0.01) > 0.005
    c = metrics.confusion(labels, scores, t)
    assert c.false_positive_rate <= 0.01
    assert metrics.recall_at_fpr(labels, scores, 0.01) == pytest.approx(c.recall, abs=0.01)


ROC_AUC = {"roc_auc": metrics.Ranking.roc_auc}


def roc_interval(labels: np.ndarray, scores: np.ndarray, clusters: np.ndarray, **kwargs: int) -> tuple[float, float]:
    return metrics.cluster_bootstrap_intervals(labels, scores, clusters, ROC_AUC, **kwargs)["roc_auc"]


def test_cluster_bootstrap_interval_resamples_whole_clusters() -> None:
    rng = np.random.default_rng(0)
    # 40 clusters of 50 windows; a cluster's windows share most of their score (one recording).
    clusters = np.repeat(np.arange(40), 50)
    labels = clusters < 8
    shared = rng.normal(0, 1.5, 40)[clusters]
    scores = labels * 2.0 + shared + rng.normal(0, 0.5, clusters.size)
    point = metrics.roc_auc(labels, scores)
    low, high = roc_interval(labels, scores, clusters, resamples=300)
    assert low < point < high
    # Treating each window as independent understates the uncertainty of correlated windows.
    naive = roc_interval(labels, scores, np.arange(clusters.size), resamples=300)
    assert (high - low) > 2 * (naive[1] - naive[0])
    # Seeded, and every resample keeps both classes.
    assert roc_interval(labels, scores, clusters, resamples=300) == (low, high)
    with pytest.raises(ValueError, match="positives"):
        roc_interval(np.zeros(10, bool), np.zeros(10), np.arange(10))


def test_a_resample_holds_each_drawn_cluster_whole_and_nothing_else() -> None:
    rng = np.random.default_rng(2)
    clusters = rng.integers(0, 25, 400)  # unequal clusters, members scattered through the items
    labels = np.isin(clusters, [3, 7, 11, 19])
    for drawn in metrics.cluster_resamples(labels, clusters, resamples=20, seed=5):
        picked, times = np.unique(clusters[drawn], return_counts=True)
        # A cluster drawn k times contributes each of its items k times, in their original order.
        for cluster, count in zip(picked, times, strict=True):
            members = np.flatnonzero(clusters == cluster)
            copies = count // members.size
            assert count == copies * members.size
            assert list(drawn[clusters[drawn] == cluster]) == list(members) * copies
        assert labels[drawn].any() and not labels[drawn].all()


def test_metrics_of_one_ranking_equal_each_metric_on_its_own() -> None:
    rng = np.random.default_rng(4)
    labels = rng.random(500) < 0.3
    scores = np.round(rng.random(500) * 0.6 + labels * 0.3, 2)  # ties, as int8 scores have
    ranking = metrics.rank(labels, scores)
    assert ranking.roc_auc() == metrics.roc_auc(labels, scores)
    assert ranking.average_precision() == metrics.average_precision(labels, scores)
    assert ranking.recall_at_fpr(0.05) == metrics.recall_at_fpr(labels, scores, 0.05)
    # Several statistics over one pass of resamples: each the interval it gets alone.
    both = {"roc_auc": metrics.Ranking.roc_auc, "ap": metrics.Ranking.average_precision}
    together = metrics.cluster_bootstrap_intervals(labels, scores, np.arange(500) // 5, both, resamples=50)
    for name, statistic in both.items():
        alone = metrics.cluster_bootstrap_intervals(
            labels, scores, np.arange(500) // 5, {name: statistic}, resamples=50
        )
        assert together[name] == alone[name]


def test_paired_bootstrap_difference_sees_what_separate_intervals_miss() -> None:
    rng = np.random.default_rng(1)
    clusters = np.repeat(np.arange(30), 40)
    labels = clusters < 6
    hardness = rng.normal(0, 1.5, 30)[clusters]  # some recordings are hard for every model
    baseline = labels * 1.5 + hardness + rng.normal(0, 0.5, clusters.size)
    better = baseline + labels * 0.4  # the same model, a little surer of every scream
    difference, low, high = metrics.paired_bootstrap_differences(
        labels, better, baseline, clusters, ROC_AUC, resamples=300
    )["roc_auc"]
    assert difference == pytest.approx(metrics.roc_auc(labels, better) - metrics.roc_auc(labels, baseline))
    assert 0 < low <= difference <= high
    # Compared as two separate intervals, the gain would vanish in their overlap.
    a = roc_interval(labels, better, clusters, resamples=300)
    b = roc_interval(labels, baseline, clusters, resamples=300)
    assert a[0] < b[1]
    assert metrics.paired_bootstrap_differences(labels, baseline, baseline, clusters, ROC_AUC)["roc_auc"][1:] == (0, 0)
    with pytest.raises(ValueError, match="one shape"):
        metrics.paired_bootstrap_differences(labels, baseline[:-1], baseline, clusters, ROC_AUC)


def test_poisson_rate_interval_matches_the_exact_tables() -> None:
    # Garwood's exact 95% limits for counts 0 and 10 (e.g. Ulm 1990): 0-3.689 and 4.795-18.39.
    assert metrics.poisson_rate_interval(0, 1.0) == (0.0, pytest.approx(3.689, abs=1e-3))
    low, high = metrics.poisson_rate_interval(10, 0.5)
    assert low == pytest.approx(4.795 / 0.5, abs=2e-3) and high == pytest.approx(18.39 / 0.5, abs=2e-2)


def _band_energy(x: np.ndarray, rate: int, lo: float, hi: float) -> float:
    spectrum = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(x.size, 1 / rate)
    return float(spectrum[(freqs >= lo) & (freqs < hi)].sum())


def test_bandlimit_removes_the_top_band() -> None:
    rng = np.random.default_rng(1)
    x = colored_noise(16000, "white", 16000, rng)
    y = bandlimit(x, 16000, rng)
    assert _band_energy(y, 16000, 7000, 8000) < 1e-3 * _band_energy(x, 16000, 7000, 8000)


def test_mix_at_snr_hits_the_requested_ratio() -> None:
    rng = np.random.default_rng(2)
    fg, bg = colored_noise(8000, "pink", 16000, rng), colored_noise(8000, "white", 16000, rng)
    mixed = mix_at_snr(fg, bg, 10.0)
    noise = mixed - fg
    assert 10 * np.log10(np.mean(fg**2) / np.mean(noise**2)) == pytest.approx(10.0, abs=0.01)


def test_noise_colours_have_their_slopes() -> None:
    rng = np.random.default_rng(3)
    for colour, expected_ratio in (("white", 1.0), ("pink", 8.0), ("brown", 64.0)):
        x = colored_noise(64000, colour, 16000, rng)
        ratio = _band_energy(x, 16000, 250, 500) / _band_energy(x, 16000, 2000, 4000) * 8
        assert ratio == pytest.approx(expected_ratio, rel=0.35)


def test_augment_chain_stays_finite_and_in_range() -> None:
    rng = np.random.default_rng(4)
    x = colored_noise(15600, "pink", 16000, rng) * 0.3
    for _ in range(20):
        y = augment_waveform(x, 16000, rng, AugmentParams(), [colored_noise(4000, "brown", 16000, rng)])
        assert y.shape == x.shape and np.all(np.isfinite(y)) and np.abs(y).max() <= 1.0


def test_overdrive_clips_at_full_scale_by_the_requested_amount() -> None:
    t = np.arange(16000) / 16000
    tone = (0.05 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    driven = overdrive(tone, 12.0)
    assert np.abs(driven).max() == 1.0
    # Driven 12 dB over full scale, the sine is clipped wherever |sin| > 10**(-12/20) (about 0.25).
    assert np.mean(np.abs(driven) == 1.0) == pytest.approx(1 - 2 / np.pi * np.arcsin(10 ** (-12 / 20)), abs=0.02)
    silence = np.zeros(100, np.float32)
    assert np.array_equal(overdrive(silence, 12.0), silence)


def test_spec_augment_masks_with_the_mean() -> None:
    rng = np.random.default_rng(5)
    features = rng.normal(size=(96, 40)).astype(np.float32)
    params = AugmentParams(specaugment_probability=1.0, time_masks=1, time_mask_frames=10, freq_masks=0)
    masked = spec_augment(features, rng, params)
    changed_rows = np.flatnonzero(np.any(masked != features, axis=1))
    assert 1 <= changed_rows.size <= 10  # a mask is applied (a SpecAugment that did nothing fails here)
    assert np.all(np.diff(changed_rows) == 1)  # one block of consecutive frames
    assert np.allclose(masked[changed_rows], features.mean())
    untouched = np.setdiff1d(np.arange(96), changed_rows)
    np.testing.assert_array_equal(masked[untouched], features[untouched])


def test_onset_windows_end_just_after_the_scream_starts() -> None:
    from edge.features import FeatureParams
    from train.windows import active_span, random_window

    features = FeatureParams()
    clip = np.zeros(48000, np.float32)
    clip[16000:40000] = 0.5 * np.sin(np.arange(24000) * 0.2)  # the scream starts at 1.0 s
    first, _ = active_span(clip, features)
    rng = np.random.default_rng(0)
    for _ in range(20):
        window = random_window(clip, is_scream=True, length=15600, features=features, rng=rng, onset_probability=1.0)
        loud = np.flatnonzero(np.abs(window) > 0.01)
        # Only the first 0.25-0.6 s of the scream is inside, at the end of the window.
        assert 0.24 * 16000 <= window.size - loud[0] <= 0.61 * 16000
    assert first == 16000


def test_speed_change_moves_pitch_and_keeps_the_length() -> None:
    from train.augment import change_speed

    rate = 16000
    t = np.arange(2 * rate) / rate
    tone = np.sin(2 * np.pi * 1000 * t).astype(np.float32)

    def peak_hz(x: np.ndarray) -> float:
        return float(np.fft.rfftfreq(x.size, 1 / rate)[np.argmax(np.abs(np.fft.rfft(x)))])

    for speed in (0.85, 1.0, 1.18):
        out = change_speed(tone[: round(15600 * speed)], 15600)
        assert out.size == 15600 and out.dtype == np.float32
        assert peak_hz(out) == pytest.approx(1000 * speed, abs=2.0)
    same = tone[:15600]
    assert change_speed(same, 15600) is same  # speed 1: untouched


def test_batches_draw_speeds_only_when_speed_changes_are_on() -> None:
    from pathlib import Path

    from edge.features import FeatureParams
    from train.data import Clip
    from train.pipeline import AugmentedBatches, PreparedSplit, TrainConfig

    rng = np.random.default_rng(0)
    clips = [Clip(path=Path(f"{k}.wav"), label=lab, group=str(k)) for k, lab in enumerate(["scream", "non_scream"])]
    waves = [rng.standard_normal(40000).astype(np.float32) * 0.1 for _ in clips]
    split = PreparedSplit(clips, waves)
    config = TrainConfig(batch_size=8)
    off = AugmentedBatches(split, FeatureParams(), config, AugmentParams(speed_probability=0.0))
    state = np.random.default_rng(5)
    before = state.bit_generator.state
    assert off._speed(state) == 1.0 and state.bit_generator.state == before  # nothing drawn
    on = AugmentedBatches(split, FeatureParams(), config, AugmentParams(speed_probability=1.0))
    speeds = [on._speed(state) for _ in range(200)]
    assert all(0.85 <= s <= 1.18 for s in speeds) and np.std(speeds) > 0.05
    windows, labels = on.batch(0)
    assert windows.shape == (8, 96, 40, 1) and np.isfinite(windows).all() and labels.sum() == 4
