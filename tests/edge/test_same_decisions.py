"""One detector for every command: the same recording through `scream listen` (file replay, the
real command in a child process), `scream detect` and `scream explain`'s timeline gives the same
events, loudness gate included, with the default config and with one whose gate bites."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge import synth
from edge.audio import write_wav
from edge.classifier import Classifier
from edge.cli import main
from edge.config import load_config
from edge.explain import build_timeline
from edge.service import listen_argv

ROOT = Path(__file__).resolve().parents[2]
RATE = 16000


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Room tone with a quieter scream-like sound (about -28 dBFS) at 1 s and a loud one (about -13
    dBFS) at 6 s."""
    rng = np.random.default_rng(3)
    parts = []
    for level in (0.1, 0.5):
        part = synth.room_tone(5.0, RATE, rng, level=0.0005)
        scream = synth.scream_like(1.5, RATE, rng, level=level)
        part[RATE : RATE + scream.size] += scream
        parts.append(part)
    path = tmp_path_factory.mktemp("same") / "two-screams.wav"
    write_wav(path, np.concatenate(parts), RATE)
    return path


def listen_events(model: Path, recording: Path, config: Path, state: Path) -> list[tuple[float, float, float]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    argv = listen_argv(config=config, model=model, source=recording, fast=True)
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in (state / "events.jsonl").read_text().splitlines()]
    return [(r["start_stream_s"], r["end_stream_s"], r["peak_score"]) for r in records if r["type"] == "event_end"]


def detect_events(model: Path, recording: Path, config: Path, capsys: pytest.CaptureFixture[str]) -> list[Any]:
    capsys.readouterr()
    assert main(["detect", "--json", "--model", str(model), "--config", str(config), str(recording)]) == 0
    report = json.loads(capsys.readouterr().out.splitlines()[0])
    return [(s["start_s"], s["end_s"], s["peak_score"]) for s in report["segments"]]


@pytest.mark.parametrize("detector", ["", "loudness_gate_dbfs = -22.0\n"], ids=["default", "gate-at-22dBFS"])
def test_listen_detect_and_explain_decide_alike(
    tiny_model: Path, recording: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], detector: str
) -> None:
    state = tmp_path / "state"
    config = tmp_path / "site.toml"
    # Only where state goes and which outputs exist: the decisions are the defaults (or the gate).
    config.write_text(
        f'[paths]\nstate_dir = "{state}"\n[gpio]\nenabled = false\n[clips]\nenabled = false\n'
        f"[model]\nwatch = false\n[detector]\n{detector}"
    )
    live = listen_events(tiny_model, recording, config, state)
    files = detect_events(tiny_model, recording, config, capsys)
    timeline = build_timeline(recording, Classifier(tiny_model), load_config(config))
    drawn = [(round(e.start_s, 3), round(e.end_s or 0.0, 3), round(e.peak_score, 4)) for e in timeline.events]
    assert live == files == drawn
    loud = [event for event in live if event[0] > 5.0]
    assert len(loud) == 1  # the loud scream fires whatever the gate
    quiet_windows = [w for w in timeline.windows if w.end_s < 4.0 and w.score >= w.on_threshold]
    if detector:
        # The gate at -22 dBFS holds back every window of the quieter scream, in all three commands.
        assert quiet_windows and all(w.gated for w in quiet_windows) and live == loud


def test_listen_off_a_pi_says_once_what_it_lacks_and_where_it_writes(
    tiny_model: Path, recording: Path, tmp_path: Path
) -> None:
    """The first run on a laptop: GPIO on by default (no Pi here), a WAV cut short, the state folder."""
    cut = tmp_path / "cut.wav"
    cut.write_bytes(recording.read_bytes()[: recording.stat().st_size // 2])
    state = tmp_path / "state"
    config = tmp_path / "laptop.toml"
    config.write_text(f'[paths]\nstate_dir = "{state}"\n[model]\nwatch = false\n')
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("GPIOZERO_PIN_FACTORY", None)
    argv = listen_argv(config=config, model=tiny_model, source=cut, fast=True)
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    err = proc.stderr
    assert "Fallback" not in err and err.count("no GPIO here") == 1 and "[gpio] enabled = false" in err
    assert f"state in {state}: events {state / 'events.jsonl'}, clips {state / 'clips'}" in err
    assert "truncated: header declares" in err  # as `scream detect` warns about the same file


def test_a_named_pipe_is_refused_by_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fifo = tmp_path / "live.wav"
    os.mkfifo(fifo)
    assert main(["detect", str(fifo)]) == 1
    assert "not a regular file (a named pipe" in capsys.readouterr().err


def test_listen_detect_and_explain_veto_alike(
    tiny_model: Path, recording: Path, stand_in_verifier: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With `[verifier]` the three commands fire the same events: the stand-in second stage turns the
    quieter scream down in each, and `listen` logs each fired event's verdict and counts the veto."""
    state = tmp_path / "state"
    plain = tmp_path / "plain.toml"
    base = (
        f'[paths]\nstate_dir = "{state}"\n[gpio]\nenabled = false\n[clips]\nenabled = false\n[model]\nwatch = false\n'
    )
    plain.write_text(base)
    config = tmp_path / "verified.toml"
    config.write_text(base + f'[verifier]\nmodel = "{stand_in_verifier}"\nthreshold = 0.5\n')
    unverified = detect_events(tiny_model, recording, plain, capsys)
    live = listen_events(tiny_model, recording, config, state)
    files = detect_events(tiny_model, recording, config, capsys)
    timeline = build_timeline(recording, Classifier(tiny_model), load_config(config))
    drawn = [(round(e.start_s, 3), round(e.end_s or 0.0, 3), round(e.peak_score, 4)) for e in timeline.events]
    assert live == files == drawn
    assert len(unverified) == 2 and live == [e for e in unverified if e[0] > 5.0]  # the quiet one is vetoed
    records = [json.loads(line) for line in (state / "events.jsonl").read_text().splitlines()]
    fired = [r for r in records if r["type"] == "event_start"]
    assert len(fired) == 1 and fired[0]["verify_score"] > 0.5
    status = json.loads((state / "status.json").read_text())
    assert status["verifier"]["checked"] == 2 and status["verifier"]["vetoed"] == 1
    assert status["verifier"]["model"] == str(stand_in_verifier)
    capsys.readouterr()
    assert main(["status", "--config", str(config)]) == 1  # the replay has ended: "audio device stopped"
    shown = capsys.readouterr().out
    assert f"verifier    {stand_in_verifier}: 2 verdicts (up to 1 a candidate), 1 below threshold 0.5 (config)" in shown


@pytest.mark.parametrize("keep", [True, False], ids=["keep-vetoed", "default"])
def test_listen_logs_each_vetoed_candidate_and_keeps_its_clip_only_when_asked(
    tiny_model: Path, recording: Path, stand_in_verifier: Path, tmp_path: Path, keep: bool
) -> None:
    """The quiet scream is vetoed: no alarm, but an `event_vetoed` line with its verdict and span; with
    `[clips] keep_vetoed` its clip is saved beside the fired event's, and the review index marks it."""
    from edge.labels import EventIndex

    state = tmp_path / "state"
    config = tmp_path / "verified.toml"
    config.write_text(
        f'[paths]\nstate_dir = "{state}"\n[gpio]\nenabled = false\n[model]\nwatch = false\n'
        f"[clips]\npre_roll_s = 0.5\npost_roll_s = 0.5\nmin_free_bytes = 0\nkeep_vetoed = {str(keep).lower()}\n"
        f'[verifier]\nmodel = "{stand_in_verifier}"\nthreshold = 0.5\n'
    )
    fired = listen_events(tiny_model, recording, config, state)
    assert len(fired) == 1 and fired[0][0] > 5.0  # the loud scream alone fires, as without clips
    records = [json.loads(line) for line in (state / "events.jsonl").read_text().splitlines()]
    vetoed = [r for r in records if r["type"] == "event_vetoed"]
    assert len(vetoed) == 1 and [r["type"] for r in records].count("event_start") == 1
    candidate = vetoed[0]
    assert candidate["vetoed"] is True and candidate["number"] == 0 and candidate["verify_score"] < 0.5
    assert 0.5 < candidate["start_stream_s"] < candidate["end_stream_s"] < 5.0 and candidate["peak_score"] > 0
    clips = sorted(p.name for p in (state / "clips").glob("*.wav"))
    started = next(r for r in records if r["type"] == "event_start")
    if not keep:
        assert "clip" not in candidate and clips == [started["clip"]]
        assert [e.vetoed for e in EventIndex(state / "clips", state / "events.jsonl").events()[0]] == [False]
        return
    assert clips == sorted([started["clip"], candidate["clip"]])
    events, problems = EventIndex(state / "clips", state / "events.jsonl").events()
    by_clip = {e.clip: e for e in events}
    assert not problems and by_clip[candidate["clip"]].vetoed and not by_clip[started["clip"]].vetoed
    assert by_clip[candidate["clip"]].to_json()["verify_score"] == candidate["verify_score"]
    assert by_clip[started["clip"]].verify_score == started["verify_score"] > 0.5
    # The clip holds the candidate's span with its pre- and post-roll.
    import soundfile

    seconds = soundfile.info(str(state / "clips" / candidate["clip"])).duration
    span = candidate["end_stream_s"] - candidate["start_stream_s"]
    assert seconds == pytest.approx(span + 1.0, abs=0.15)


def test_listen_fires_a_vetoed_candidate_that_a_later_verdict_passes(
    tiny_model: Path, stand_in_verifier: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`[verifier] attempts = 3`: a quiet scream running straight into a loud one is one candidate,
    turned down on its quiet windows and passed on its loud ones. `listen` fires it then (an
    `event_start` with its verdict count, no `event_vetoed` line, its clip kept as an event's), and
    `detect` and `explain` fire the same event; with one verdict it stays vetoed."""
    rng = np.random.default_rng(4)
    audio = synth.room_tone(7.0, RATE, rng, level=0.0005)
    quiet, loud = synth.scream_like(1.2, RATE, rng, level=0.12), synth.scream_like(1.5, RATE, rng, level=0.8)
    audio[RATE : RATE + quiet.size] += quiet
    audio[RATE + quiet.size : RATE + quiet.size + loud.size] += loud
    recording = tmp_path / "quiet-into-loud.wav"
    write_wav(recording, audio, RATE)
    outcomes = {}
    for attempts in (1, 3):
        state = tmp_path / f"state-{attempts}"
        config = tmp_path / f"site-{attempts}.toml"
        config.write_text(
            f'[paths]\nstate_dir = "{state}"\n[gpio]\nenabled = false\n[model]\nwatch = false\n'
            "[detector]\non_threshold = 0.65\n"  # the tiny model raises the quiet part at this `on`
            "[clips]\npre_roll_s = 0.5\npost_roll_s = 0.5\nmin_free_bytes = 0\nkeep_vetoed = true\n"
            f'[verifier]\nmodel = "{stand_in_verifier}"\nthreshold = 0.5\nattempts = {attempts}\n'
        )
        fired = listen_events(tiny_model, recording, config, state)
        records = [json.loads(line) for line in (state / "events.jsonl").read_text().splitlines()]
        files = detect_events(tiny_model, recording, config, capsys)
        timeline = build_timeline(recording, Classifier(tiny_model), load_config(config))
        drawn = [(round(e.start_s, 3), round(e.end_s or 0.0, 3), round(e.peak_score, 4)) for e in timeline.events]
        assert fired == files == drawn
        status = json.loads((state / "status.json").read_text())["verifier"]
        outcomes[attempts] = (fired, records, status, sorted(p.name for p in (state / "clips").glob("*.wav")))
    fired, records, status, clips = outcomes[1]
    assert fired == [] and [r["type"] for r in records].count("event_vetoed") == 1
    assert status["checked"] == 1 and status["vetoed"] == 1 and status["attempts"] == 1
    vetoed_span = next((r["start_stream_s"], r["end_stream_s"]) for r in records if r["type"] == "event_vetoed")
    fired, records, status, clips = outcomes[3]
    assert len(fired) == 1 and fired[0][:2] == vetoed_span  # the same candidate, its span unchanged
    assert "event_vetoed" not in [r["type"] for r in records]
    started = next(r for r in records if r["type"] == "event_start")
    assert started["verdicts"] >= 2 and started["verify_score"] >= 0.5 and started["number"] == 1
    assert started["detected_stream_s"] > started["start_stream_s"] + 1.0  # fired at the later verdict
    assert status["checked"] == started["verdicts"] and status["vetoed"] == started["verdicts"] - 1
    assert clips == [started["clip"]]
