"""`scream verification`: what the optional second stage (`[verifier]`, edge.verifier) does for a
model on its own validation and test audio, and the settings a site that enables it should run.

Each split's non-screams back to back (the stream) and the same with its screams inserted at 0-20 dB
(scenes) are built and scored exactly as `scream evaluate` builds and scores them (train/scenes.py).
The verifier scores every window of the live grid too, so every pair of the student's `on` and the
verifier's threshold can be replayed (train/teacher_row.py `cascade_curve`: a candidate is kept when
the verifier's best score over the windows that raised it reaches the threshold; with `[verifier]
attempts` a vetoed candidate is judged again as `listen` judges it, and fires at its first passing
verdict).

Chosen on validation, by one rule for both: the most scene event recall at or under `budget` false
alarms per hour, for the student alone (its `on`) and for the student with the verifier (its `on`
and the verifier threshold). On the test split both operating points are then replayed as `listen`
runs them: the live `Detector` at that `on`, each candidate judged by the edge's own `EventVerifier`
on the audio of its raising windows (edge.pipeline `raising_windows`), the stream's false alarms and
the scenes' recall side by side, the recall difference paired scream by scream. A vetoed candidate
runs its course in the detector without firing, so a threshold's events are exactly the candidates
whose verdict reaches it (tests/train/test_verification.py checks this against the live pipeline).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edge.classifier import Classifier, ModelSidecar, VerificationPair, sha256_file, sidecar_path
from edge.detector import EventStarted
from edge.errors import ModelError, ScreamError
from edge.features import FeatureParams
from edge.pipeline import detection_settings, raising_windows
from edge.verifier import EventVerifier
from train import metrics
from train.data import WaveformCache, load_dataset
from train.evaluate import restrict_to_split
from train.scenes import (
    StreamScores,
    Verdict,
    _source_interval,
    curve_headline,
    curve_thresholds,
    decide_verdicts,
    float_thresholds,
    match_events,
    paired_headline,
    pooled_scene_metrics,
    scene_curve,
    score_stream,
    stream_and_scene,
    within_budget,
)
from train.teacher_row import cascade_curve, excerpt, patience_site

FloatArray = npt.NDArray[np.float32]
SPLITS = ("validation", "test")
Scene = tuple[StreamScores, list[dict[str, Any]]]


@dataclass
class Replayed:
    """One split's audio, scored once: the stream and scenes (audio, student scores, verifier scores
    per window, inserted screams; the stream has none)."""

    stream: tuple[FloatArray, StreamScores, StreamScores]
    scenes: list[tuple[FloatArray, StreamScores, StreamScores, list[dict[str, Any]]]]

    def student(self) -> list[Scene]:
        return [(scored, truth) for _, scored, _, truth in self.scenes]

    def verifier(self) -> list[Scene]:
        return [(verified, truth) for _, _, verified, truth in self.scenes]


@dataclass
class Judged:
    """One replayed audio at one `on`: the candidate events, their spans, each candidate's verdicts
    (the scores of every verdict `listen` would ask for, in order, as if each failed) and the moment
    each was asked, the inserted screams (none for the stream) and its length."""

    starts: list[EventStarted]
    spans: list[tuple[float, float]]
    verdicts: list[npt.NDArray[np.float64]]
    moments: list[list[float]]
    truth: list[dict[str, Any]]
    seconds: float

    def kept(self, threshold: float) -> tuple[list[EventStarted], list[tuple[float, float]]]:
        """The events that fire with the verifier at `threshold` (0: every candidate, no verifier),
        each detected at its first passing verdict. Starts and spans pair by position, as
        train/scenes.py match_events pairs them."""
        n = min(len(self.starts), len(self.spans))
        fired, spans = [], []
        for i, start in enumerate(self.starts):
            passing = np.flatnonzero(self.verdicts[i] >= threshold)
            if passing.size == 0:
                continue
            first = int(passing[0])
            event = replace(start.event, detected_s=self.moments[i][first], verify_score=float(self.verdicts[i][first]))
            fired.append(EventStarted(event))
            if i < n:
                spans.append(self.spans[i])
        return fired, spans


def judge_candidates(
    verifier: EventVerifier,
    audio: FloatArray,
    verdicts: list[list[Verdict]],
    *,
    hop_s: float,
    window_s: float,
    rate: int,
) -> list[npt.NDArray[np.float64]]:
    """Each candidate's verdicts (train/scenes.py `decide_verdicts`), each from the audio of the
    windows that asked for it, as `listen` judges them."""
    n = verifier.window_samples
    return [
        np.array(
            [
                verifier.judge(
                    [
                        excerpt(audio, round(t * rate), n)
                        for t in raising_windows(start_s, detected_s, hop_s=hop_s, window_s=window_s)
                    ]
                )
                for start_s, detected_s in asked
            ],
            dtype=np.float64,
        )
        for asked in verdicts
    ]


def verifier_windows(verifier: EventVerifier, audio: FloatArray, scored: StreamScores, rate: int) -> StreamScores:
    """The verifier's score of every window the student scored (for curves over every `on`)."""
    windows = [
        replace(w, score=verifier.score(excerpt(audio, round(w.start_s * rate), verifier.window_samples)))
        for w in scored.windows
    ]
    return StreamScores(windows, scored.seconds)


def at_budget(curve: dict[str, Any], budget: float) -> dict[str, Any]:
    """The curve row with the most recall within `budget` false alarms per hour (the fewest false
    alarms when no row gets within it)."""
    best = within_budget(curve, budget)
    return best or min(curve["rows"], key=lambda r: (r["false_alarms"], -sum(r["hits"])))


def outcome(stream: Judged, scenes: list[Judged], threshold: float) -> tuple[dict[str, Any], list[int]]:
    """The stream's false alarms and the pooled scene metrics with the verifier at `threshold`, and
    each inserted scream's 0/1 (scene after scene)."""
    stream_starts, _ = stream.kept(threshold)
    hours = stream.seconds / 3600
    low, high = metrics.poisson_rate_interval(len(stream_starts), hours)
    kept = [(*s.kept(threshold), s.truth, s.seconds) for s in scenes]
    scene = pooled_scene_metrics(kept)
    scene.pop("missed_snr_db")
    hits = []
    for starts, spans, truth, _ in kept:
        found = match_events(starts, spans, truth).detected
        hits += [int(i in found) for i in range(len(truth))]
    row = {
        "stream_false_alarms": len(stream_starts),
        "stream_hours": round(hours, 3),
        "stream_false_alarms_per_hour": round(len(stream_starts) / max(hours, 1e-9), 3),
        "stream_false_alarms_per_hour_interval_95": [round(low, 3), round(high, 3)],
        **{f"scene_{k}": v for k, v in scene.items()},
    }
    return row, hits


def verification_report(
    model: str | os.PathLike[str],
    data: str | os.PathLike[str],
    *,
    splits_file: str | os.PathLike[str],
    verifier: EventVerifier,
    out_dir: str | os.PathLike[str],
    cache_dir: str = "",
    seed: int = 0,
    scenes: int = 4,
    budget: float = 5.0,
    patience: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """Measure `verifier` behind `model` and choose its settings on validation; writes report.json/.md.
    `patience` (k, n) decides with k of n windows instead of the model's own (`[detector]
    patience_windows/patience_of`), every row alike."""
    started = time.monotonic()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    classifier = Classifier(model, expected_features=FeatureParams())
    side = classifier.sidecar
    decisions, hop = detection_settings(side, patience_site(patience))
    rate = side.features.sample_rate_hz
    hop_s = hop * side.features.hop_samples / rate
    dataset = load_dataset(data)
    cache = WaveformCache.at(cache_dir, rate)
    replayed: dict[str, Replayed] = {}
    for split in SPLITS:
        clips = restrict_to_split(dataset.clips, Path(splits_file), split, dataset.base)
        waves = [cache.load(c.path) for c in clips]
        parts = []
        for k in range(scenes):  # as scream evaluate: scene k reorders the split with seed + k
            stream_audio, scene_audio, truth, _ = stream_and_scene(clips, waves, side.features, seed + k)
            if k == 0:
                scored = score_stream(classifier, stream_audio)
                stream = (stream_audio, scored, verifier_windows(verifier, stream_audio, scored, rate))
            scored = score_stream(classifier, scene_audio)
            parts.append((scene_audio, scored, verifier_windows(verifier, scene_audio, scored, rate), truth))
        replayed[split] = Replayed(stream, parts)

    def curves(split: str) -> tuple[dict[str, Any], dict[str, Any]]:
        student, verified = replayed[split].student(), replayed[split].verifier()
        thresholds = curve_thresholds(student)
        return (
            scene_curve(student, decisions, thresholds),
            cascade_curve(student, verified, decisions, thresholds, float_thresholds(verified), verifier.attempts),
        )

    def judged_at(split: str, on: float) -> tuple[Judged, list[Judged]]:
        params = decisions.with_threshold(on)
        runs = []
        for audio, scored, _, truth in [(*replayed[split].stream, []), *replayed[split].scenes]:
            starts, spans, asked, seconds = decide_verdicts(scored, params, verifier.attempts)
            verdicts = judge_candidates(verifier, audio, asked, hop_s=hop_s, window_s=side.window_s, rate=rate)
            runs.append(Judged(starts, spans, verdicts, [[d for _, d in a] for a in asked], truth, seconds))
        return runs[0], runs[1:]

    student_validation, verified_validation = curves("validation")
    student_pick, verified_pick = at_budget(student_validation, budget), at_budget(verified_validation, budget)
    points: dict[str, dict[str, Any]] = {}
    hits: dict[str, list[int]] = {}
    for name, on, threshold in (
        ("model", decisions.on_threshold, 0.0),
        ("student", student_pick["on"], 0.0),
        ("verified", verified_pick["on"], verified_pick["verify_on"]),
    ):
        row: dict[str, Any] = {"on": on, "verifier_threshold": threshold}
        for split in SPLITS:
            measured, split_hits = outcome(*judged_at(split, on), threshold)
            row[split] = measured
            if split == "test":
                hits[name] = split_hits
        points[name] = row
    sources = np.array([t.get("source", "") for _, truth in replayed["test"].student() for t in truth], dtype=str)
    difference = np.array(hits["verified"]) - np.array(hits["student"])
    student_test, verified_test = curves("test")
    stats = verifier.stats
    report = {
        "model": str(model),
        "model_sha256": classifier.sha256,
        "verifier": {
            "model": str(verifier.model_path),
            "sha256": verifier.sha256,
            "classes": verifier.classes,
            "head": str(verifier.head.path) if verifier.head is not None else "",
            "head_sha256": verifier.head.sha256 if verifier.head is not None else "",
            "attempts": verifier.attempts,
        },
        "decisions": decisions.describe(),
        "patience": list(patience) if patience else None,
        "scenes_per_split": scenes,
        "seed": seed,
        "budget_false_alarms_per_hour": budget,
        "points": points,
        "test_recall_difference": {
            "difference": round(float(difference.mean()), 4) if difference.size else None,
            "interval_95": _source_interval(difference, sources, seed) if difference.size else None,
        },
        "test_curves": {
            "student": curve_headline([student_test], seed=seed),
            "student_verified": curve_headline([verified_test], seed=seed),
            "paired": paired_headline([verified_test], [student_test], seed=seed),
        },
        "candidates_judged": stats.checked,
        "verifier_windows": stats.windows,
        "verifier_ms_per_window": round(stats.invoke_ms_total / max(stats.windows, 1), 3),
        "seconds": round(time.monotonic() - started, 1),
    }
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "report.md").write_text(verification_markdown(report))
    return report


def chosen_pair(report: dict[str, Any], where: str = "") -> VerificationPair:
    """The pair a verification report chose on validation, as a model's sidecar keeps it. A report
    whose choice has no verifier threshold (the verifier let everything pass) has no pair to keep."""
    point, verifier = report["points"]["verified"], report["verifier"]
    if not point["verifier_threshold"] > 0:
        raise ScreamError(
            f"the verification chose no verifier threshold (it is {point['verifier_threshold']!r}): no pair to record"
        )
    patience = report.get("patience")
    budget = report["budget_false_alarms_per_hour"]
    return VerificationPair(
        verifier_sha256=verifier["sha256"],
        head_sha256=verifier.get("head_sha256", ""),
        classes=() if verifier.get("head_sha256") else tuple(verifier["classes"]),
        on_threshold=float(point["on"]),
        threshold=float(point["verifier_threshold"]),
        attempts=int(verifier.get("attempts", 1)),
        patience=(patience[0], patience[1]) if patience else None,
        chosen=(
            f"scream verification on validation scenes, the most recall at <= {budget:g} false alarms/h "
            f"({report['scenes_per_split']} scenes, seed {report['seed']})" + (f"; {where}" if where else "")
        ),
    )


def record_pair(model: str | os.PathLike[str], pair: VerificationPair, model_sha256: str) -> Path:
    """Keep `pair` in the model's sidecar (`verification`), in place of one for the same verdict,
    so the settings follow the model to every site. The sidecar must belong to the model measured
    (`model_sha256`); the file is replaced whole, and only once the new content loads."""
    side_path = sidecar_path(model)
    side = ModelSidecar.load(side_path)
    if side.sha256 != model_sha256 or sha256_file(model) != model_sha256:
        raise ScreamError(
            f"{side_path} is not the sidecar of the model measured (sha256 {model_sha256[:12]}): pair not recorded"
        )
    raw = dict(side.raw)
    kept = [p for p in side.verification if p.key != pair.key]
    raw["verification"] = [p.to_sidecar() for p in [*kept, pair]]
    temporary = side_path.with_name(side_path.name + ".tmp")
    temporary.write_text(json.dumps(raw, indent=2) + "\n")
    try:
        ModelSidecar.load(temporary)
    except ModelError:
        temporary.unlink()
        raise
    os.replace(temporary, side_path)
    return side_path


def recommended_settings(report: dict[str, Any]) -> str:
    """The config lines that run the chosen pair."""
    point, verifier = report["points"]["verified"], report["verifier"]
    verdict = f'head = "{verifier["head"]}"' if verifier.get("head") else f"classes = {json.dumps(verifier['classes'])}"
    patience = report.get("patience")
    kept = f"patience_windows = {patience[0]}\npatience_of = {patience[1]}\n" if patience else ""
    return (
        f'[detector]\non_threshold = {point["on"]:g}\n{kept}\n[verifier]\nmodel = "{verifier["model"]}"\n'
        f"{verdict}\nthreshold = {point['verifier_threshold']:g}\n"
        + (f"attempts = {verifier['attempts']}\n" if verifier.get("attempts", 1) > 1 else "")
    )


def _cell(h: dict[str, Any], key: str) -> str:
    value, interval = h[key], h.get(f"{key}_interval_95")
    if value is None:
        return "not reached"
    return f"{value:g}" + (f" ({interval[0]:g}-{interval[1]:g})" if interval else "")


def verification_markdown(report: dict[str, Any]) -> str:
    budget = report["budget_false_alarms_per_hour"]
    rows = [
        "| operating point | `on` | verifier threshold | split | stream false alarms/h (95% interval) "
        "| scene event recall | scene false alarms/h | median onset to alarm (s) |",
        "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    names = {
        "model": "the model's own (no verifier)",
        "student": f"student alone, chosen at <= {budget:g} FA/h",
        "verified": f"with the verifier, chosen at <= {budget:g} FA/h",
    }
    for key, label in names.items():
        point = report["points"][key]
        for split in SPLITS:
            r = point[split]
            low, high = r["stream_false_alarms_per_hour_interval_95"]
            threshold = f"{point['verifier_threshold']:g}" if point["verifier_threshold"] else "-"
            rows.append(
                f"| {label} | {point['on']:g} | {threshold} | {split} | {r['stream_false_alarms_per_hour']:g} "
                f"({r['stream_false_alarms']} in {r['stream_hours']:g} h; {low:g}-{high:g}) "
                f"| {r['scene_event_recall']:g} ({r['scene_detected']} of {r['scene_screams']}) "
                f"| {r['scene_false_alarms_per_hour']:g} | {r['scene_median_onset_to_alarm_s']} |"
            )
    curves = report["test_curves"]
    headline = [
        "| test scenes, best threshold(s) on them | recall at <= 2 FA/h | recall at <= 5 FA/h | FA/h at recall 0.8 |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, key in (("student alone, every `on`", "student"), ("with the verifier, every pair", "student_verified")):
        h = curves[key]
        headline.append(
            f"| {name} | {_cell(h, 'recall_at_2_fa_per_hour')} | {_cell(h, 'recall_at_5_fa_per_hour')} "
            f"| {_cell(h, 'fa_per_hour_at_recall_0.8')} |"
        )
    diffs = []
    for budget_key in ("recall_at_2_fa_per_hour", "recall_at_5_fa_per_hour"):
        d = curves["paired"][budget_key]
        interval = d.get("interval_95")
        diffs.append(f"{d['difference']:+g}" + (f" ({interval[0]:+g} to {interval[1]:+g})" if interval else ""))
    headline.append(f"| paired difference (with minus without) | {diffs[0]} | {diffs[1]} | |")
    d = report["test_recall_difference"]
    interval = d["interval_95"]
    v = report["verifier"]
    return "\n".join(
        [
            "# The second stage behind the model",
            "",
            f"Model `{report['model']}` (sha256 {report['model_sha256'][:12]}), {report['decisions']}. Verifier "
            f"`{v['model']}` (sha256 {v['sha256'][:12]}); a candidate's score is the best of "
            + (f"head `{v['head']}`'s score" if v.get("head") else ", ".join(v["classes"]))
            + " over the windows that raised it"
            + (
                f"; a vetoed candidate is judged again at fresh hits, up to {v['attempts']} verdicts"
                if v.get("attempts", 1) > 1
                else ""
            )
            + f". {report['scenes_per_split']} scenes per "
            f"split (seed {report['seed']}), built as `scream evaluate` builds them.",
            "",
            f"Each operating point is chosen on the validation scenes (the most event recall at <= {budget:g} false "
            "alarms per hour) and replayed on the test split as `listen` runs it:",
            "",
            *rows,
            "",
            f"Test scene recall, with the verifier minus the student alone at their chosen points: "
            f"{d['difference']:+g}"
            + (f" (95% interval {interval[0]:+g} to {interval[1]:+g}, resampling sources)." if interval else "."),
            "",
            "The settings chosen:",
            "",
            "```toml",
            recommended_settings(report).rstrip(),
            "```",
            "",
            "Curves on the test scenes: each row at the threshold(s) these scenes allow best (not an operating "
            "point); intervals resample scream sources.",
            "",
            *headline,
            "",
            f"{report['candidates_judged']} verdicts, {report['verifier_windows']} verifier windows "
            f"({report['verifier_ms_per_window']} ms each here), {report['seconds']:.0f} s in all.",
            "",
        ]
    )
