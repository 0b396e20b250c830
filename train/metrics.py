"""Classification metrics in numpy: ROC and PR curves, AUCs, recall at a false-positive rate."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Ranking:
    """Scores ranked highest first: each distinct threshold, the true and the predicted positives at
    or above it, and the positives and negatives (at least 1 each). Every ranking metric below reads
    one of these, so several metrics of the same scores sort them once."""

    thresholds: Array
    tps: Array
    predicted: Array
    positives: int
    negatives: int

    def roc_curve(self) -> tuple[Array, Array, Array]:
        """False-positive rates, true-positive rates and thresholds (scores >= threshold are positive)."""
        fpr = np.r_[0.0, (self.predicted - self.tps) / self.negatives]
        return fpr, np.r_[0.0, self.tps / self.positives], np.r_[np.inf, self.thresholds]

    def roc_auc(self) -> float:
        fpr, tpr, _ = self.roc_curve()
        return float(np.trapezoid(tpr, fpr))

    def pr_curve(self) -> tuple[Array, Array]:
        """Precision and recall at each distinct threshold, highest threshold first."""
        return self.tps / self.predicted, self.tps / self.positives

    def average_precision(self) -> float:
        """PR AUC as average precision (step-wise, no interpolation)."""
        precision, recall = self.pr_curve()
        return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))

    def recall_at_fpr(self, fpr_target: float) -> float:
        fpr, tpr, _ = self.roc_curve()
        return float(tpr[fpr <= fpr_target].max())


def rank(labels: npt.ArrayLike, scores: npt.ArrayLike) -> Ranking:
    """`scores` ranked against `labels` (equal scores share one threshold)."""
    y = np.asarray(labels, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    distinct = np.r_[np.flatnonzero(np.diff(s)), y.size - 1]
    tps = np.cumsum(y)[distinct].astype(np.float64)
    predicted = (distinct + 1).astype(np.float64)
    return Ranking(s[distinct], tps, predicted, max(int(y.sum()), 1), max(int((~y).sum()), 1))


def roc_curve(labels: npt.ArrayLike, scores: npt.ArrayLike) -> tuple[Array, Array, Array]:
    """False-positive rates, true-positive rates and thresholds (scores >= threshold are positive)."""
    return rank(labels, scores).roc_curve()


def roc_auc(labels: npt.ArrayLike, scores: npt.ArrayLike) -> float:
    return rank(labels, scores).roc_auc()


def pr_curve(labels: npt.ArrayLike, scores: npt.ArrayLike) -> tuple[Array, Array]:
    """Precision and recall at each distinct threshold, highest threshold first."""
    return rank(labels, scores).pr_curve()


def average_precision(labels: npt.ArrayLike, scores: npt.ArrayLike) -> float:
    """PR AUC as average precision (step-wise, no interpolation)."""
    return rank(labels, scores).average_precision()


def threshold_at_fpr(labels: npt.ArrayLike, scores: npt.ArrayLike, fpr_target: float) -> float:
    """Lowest threshold whose false-positive rate on these labels stays at or below the target."""
    y = np.asarray(labels, dtype=bool)
    negatives = np.sort(np.asarray(scores, dtype=np.float64)[~y])[::-1]
    allowed = int(np.floor(fpr_target * negatives.size))
    if negatives.size == 0:
        return 0.5
    # Just above the (allowed+1)-th highest negative score.
    return float(np.nextafter(negatives[min(allowed, negatives.size - 1)], np.inf))


def recall_at_fpr(labels: npt.ArrayLike, scores: npt.ArrayLike, fpr_target: float) -> float:
    return rank(labels, scores).recall_at_fpr(fpr_target)


@dataclass(frozen=True)
class Confusion:
    true_positive: int
    false_positive: int
    true_negative: int
    false_negative: int

    @property
    def f1(self) -> float:
        denominator = 2 * self.true_positive + self.false_positive + self.false_negative
        return 2 * self.true_positive / denominator if denominator else 0.0

    @property
    def recall(self) -> float:
        total = self.true_positive + self.false_negative
        return self.true_positive / total if total else 0.0

    @property
    def false_positive_rate(self) -> float:
        total = self.false_positive + self.true_negative
        return self.false_positive / total if total else 0.0


def confusion(labels: npt.ArrayLike, scores: npt.ArrayLike, threshold: float) -> Confusion:
    y = np.asarray(labels, dtype=bool)
    p = np.asarray(scores) >= threshold
    return Confusion(int(np.sum(p & y)), int(np.sum(p & ~y)), int(np.sum(~p & ~y)), int(np.sum(~p & y)))


def cluster_resamples(
    labels: npt.ArrayLike, clusters: npt.ArrayLike, *, resamples: int = 1000, seed: int = 0
) -> Iterator[npt.NDArray[np.intp]]:
    """Index arrays of bootstrap resamples that draw whole clusters with replacement.

    Windows of one clip, or clips of one recording group, are not independent: resampling them one by
    one would make an interval too narrow. Clusters are drawn separately among those holding positives
    and those holding none, so every resample keeps both classes (a cluster with both counts as positive)."""
    y = np.asarray(labels, dtype=bool)
    _, cluster = np.unique(np.asarray(clusters), return_inverse=True)
    members = np.argsort(cluster, kind="stable")
    starts = np.searchsorted(cluster[members], np.arange(cluster.max() + 2))
    has_positive = np.bincount(cluster, weights=y.astype(np.float64)) > 0
    strata = [np.flatnonzero(has_positive), np.flatnonzero(~has_positive)]
    if any(stratum.size == 0 for stratum in strata):
        raise ValueError("a bootstrap interval needs clusters with positives and clusters without")
    sizes = np.diff(starts)
    rng = np.random.default_rng(seed)
    for _ in range(resamples):
        drawn = np.concatenate([rng.choice(stratum, size=stratum.size) for stratum in strata])
        # The drawn clusters' members back to back: each output position's offset from where its
        # cluster starts in `members`.
        drawn_sizes = sizes[drawn]
        shift = np.repeat(starts[drawn] - np.cumsum(drawn_sizes) + drawn_sizes, drawn_sizes)
        yield members[shift + np.arange(shift.size)]


def _percentiles(values: npt.ArrayLike, level: float) -> tuple[float, float]:
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(np.asarray(values, dtype=np.float64), [tail, 1.0 - tail])
    return float(low), float(high)


RankedStatistic = Callable[[Ranking], float]


def cluster_bootstrap_intervals(
    labels: npt.ArrayLike,
    scores: npt.ArrayLike,
    clusters: npt.ArrayLike,
    statistics: Mapping[str, RankedStatistic],
    *,
    resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap interval of each of `statistics` (of the scores' Ranking), resampling whole
    clusters; every statistic meets the same resamples, each resample ranked once."""
    y, s = np.asarray(labels, dtype=bool), np.asarray(scores, dtype=np.float64)
    values: dict[str, list[float]] = {name: [] for name in statistics}
    for i in cluster_resamples(y, clusters, resamples=resamples, seed=seed):
        ranking = rank(y[i], s[i])
        for name, statistic in statistics.items():
            values[name].append(statistic(ranking))
    return {name: _percentiles(v, level) for name, v in values.items()}


def paired_bootstrap_differences(
    labels: npt.ArrayLike,
    scores: npt.ArrayLike,
    baseline_scores: npt.ArrayLike,
    clusters: npt.ArrayLike,
    statistics: Mapping[str, RankedStatistic],
    *,
    resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, tuple[float, float, float]]:
    """For each of `statistics`: its value for `scores` minus that for `baseline_scores` on the same
    items, and the percentile interval of that difference when both models meet the same resampled
    clusters (a paired bootstrap: far tighter than comparing two separate intervals, since both
    models face the same hard clips)."""
    y = np.asarray(labels, dtype=bool)
    a, b = np.asarray(scores, dtype=np.float64), np.asarray(baseline_scores, dtype=np.float64)
    if not a.shape == b.shape == y.shape:
        raise ValueError(f"paired scores must have one shape: {a.shape}, {b.shape}, labels {y.shape}")
    values: dict[str, list[float]] = {name: [] for name in statistics}
    for i in cluster_resamples(y, clusters, resamples=resamples, seed=seed):
        ranked_a, ranked_b = rank(y[i], a[i]), rank(y[i], b[i])
        for name, statistic in statistics.items():
            values[name].append(statistic(ranked_a) - statistic(ranked_b))
    whole_a, whole_b = rank(y, a), rank(y, b)
    out: dict[str, tuple[float, float, float]] = {}
    for name, statistic in statistics.items():
        low, high = _percentiles(values[name], level)
        out[name] = (statistic(whole_a) - statistic(whole_b), low, high)
    return out


def poisson_rate_interval(count: int, exposure: float, *, level: float = 0.95) -> tuple[float, float]:
    """Exact (Garwood) interval of a rate from `count` events in `exposure` (for example hours)."""
    from scipy.stats import chi2

    tail = (1.0 - level) / 2.0
    low = 0.0 if count == 0 else float(chi2.ppf(tail, 2 * count)) / 2.0
    high = float(chi2.ppf(1.0 - tail, 2 * count + 2)) / 2.0
    return low / exposure, high / exposure
