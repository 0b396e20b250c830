"""`scream bench`: measured speed and memory of the edge path, medians over repeated runs.

The log-mel is compared with the independent references registered under the
`scream.logmel_references` entry point group (librosa, tf.signal: train/references.py), each only
when its library is installed; the table says what was skipped.
"""

from __future__ import annotations

import os
import platform
import resource
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edge.audio import write_wav
from edge.classifier import Classifier
from edge.config import DetectorConfig
from edge.detector import DecisionParams, EventStarted
from edge.features import FeatureParams, LogMelExtractor
from edge.pipeline import DetectionPipeline, detection_settings
from edge.synth import room_tone, scream_like, speech_like

FloatArray = npt.NDArray[np.float32]
REFERENCE_NAMES = ("librosa", "tf_signal")  # what the table reports, or names as skipped


def _median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up: caches, lazy initialisation, tracing
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def machine_description() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "system": f"{platform.system()} {platform.machine()}",
    }


REFERENCES_GROUP = "scream.logmel_references"


def logmel_references(params: FeatureParams) -> dict[str, Callable[[FloatArray], FloatArray]]:
    """The independent log-mel implementations registered under REFERENCES_GROUP (train/references.py:
    librosa, tf.signal) whose library is installed."""
    import importlib.metadata

    found = {}
    for entry in sorted(importlib.metadata.entry_points(group=REFERENCES_GROUP), key=lambda e: e.name):
        try:
            found[entry.name] = entry.load()(params)
        except ImportError:
            continue
    return found


def bench_logmel(params: FeatureParams, seconds: float, repeats: int) -> dict[str, Any]:
    """Our log-mel beside the registered references (librosa's STFT, tf.signal), all ending in the
    same filterbank and log. The implementations take turns within each repetition, so machine noise
    hits all of them alike."""
    rng = np.random.default_rng(0)
    audio = (0.1 * rng.standard_normal(int(seconds * params.sample_rate_hz))).astype(np.float32)
    ours_extractor = LogMelExtractor(params)
    ours = ours_extractor.compute(audio)
    candidates: dict[str, Callable[[], Any]] = {"numpy": lambda: ours_extractor.compute(audio)}
    differences: dict[str, float] = {}
    for name, reference in logmel_references(params).items():
        candidates[name] = lambda reference=reference: reference(audio)  # type: ignore[misc]
        differences[name] = float(np.max(np.abs(reference(audio) - ours)))
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for fn in candidates.values():
        fn()  # warm-up: caches, lazy initialisation, tracing
    for _ in range(repeats):
        for name, fn in candidates.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    row: dict[str, Any] = {"audio_s": seconds}
    for name in ("numpy", *REFERENCE_NAMES):
        row[f"{name}_ms"] = round(statistics.median(times[name]) * 1000, 3) if name in times else None
        if name in differences:
            row[f"{name}_max_abs_diff"] = differences[name]
    return row


def bench_invoke(classifier: Classifier, repeats: int) -> dict[str, Any]:
    """int8 invoke per window on one thread, and the float twin from the training run when present."""
    window = np.random.default_rng(1).normal(-8, 2, size=classifier.input_shape).astype(np.float32)
    per_call = _median_ms(lambda: [classifier.score(window) for _ in range(100)], max(repeats, 5)) / 100
    result: dict[str, Any] = {
        "runtime": classifier.runtime,
        "int8_invoke_ms": round(per_call, 4),
        "float_invoke_ms": None,
        "float_size_bytes": None,
    }
    float_model = classifier.model_path.parent / f"{classifier.model_path.stem}-run" / "model-float.tflite"
    if float_model.exists():
        from edge.classifier import load_interpreter_class

        interpreter_class, _ = load_interpreter_class()
        interpreter = interpreter_class(model_path=str(float_model), num_threads=1)
        interpreter.allocate_tensors()
        (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
        batch = window[None, :, :, None]

        def run_float() -> None:
            for _ in range(100):
                interpreter.set_tensor(inp["index"], batch)
                interpreter.invoke()
                interpreter.get_tensor(out["index"])

        result["float_invoke_ms"] = round(_median_ms(run_float, max(repeats, 5)) / 100, 4)
        result["float_size_bytes"] = float_model.stat().st_size
    return result


def scream_onsets(count: int, first_s: float, every_s: float, seed: int = 11) -> list[float]:
    """Onset times of the benchmarks' scream-like sounds: one per `every_s` from `first_s`, each late
    by a random 0-1 s, so onsets fall at every phase of the 250 ms window grid and the 100 ms capture
    chunks rather than at one phase (which would make the latency median one phase's latency)."""
    jitter = np.random.default_rng(seed).uniform(0.0, 1.0, count)
    return [round(first_s + k * every_s + float(jitter[k]), 4) for k in range(count)]


def stream_scream_onsets(minutes: int) -> list[float]:
    """Where `scene_seconds` puts its scream-like sounds: 45-46 s into every minute."""
    return scream_onsets(minutes, 45.0, 60.0)


def scene_seconds(minutes: int, rate: int, seed: int = 3) -> Iterator[FloatArray]:
    """One-second blocks (bounded memory): room tone, speech at 5 s and 25 s and a scream-like
    sound at `stream_scream_onsets` of every minute."""
    rng = np.random.default_rng(seed)
    onsets = stream_scream_onsets(minutes)
    for minute in range(minutes):
        scream_at = round((onsets[minute] - minute * 60.0) * rate)
        events = {
            5 * rate: speech_like(3.0, rate, rng),
            25 * rate: speech_like(3.0, rate, rng),
            scream_at: scream_like(1.5, rate, rng),
        }
        for second in range(60):
            block = room_tone(1.0, rate, rng)
            for start, clip in events.items():
                lo = max(0, start - second * rate)  # where the clip begins in this block
                piece = clip[max(0, second * rate - start) :][: rate - lo]
                if start < (second + 1) * rate and piece.size:
                    block[lo : lo + piece.size] += piece
            yield block


def bench_stream(classifier: Classifier, decisions: DecisionParams, minutes: int, *, hop_frames: int) -> dict[str, Any]:
    """Real-time factor of the whole streaming path (48 kHz input, so resampling counts) and latency."""
    side = classifier.sidecar
    rate = 48000
    hop = hop_frames
    pipeline = DetectionPipeline(classifier, side.features, decisions, hop_frames=hop, source_rate_hz=rate)
    chunk = rate // 10
    starts: list[float] = []
    onsets = stream_scream_onsets(minutes)
    elapsed = 0.0
    for audio in scene_seconds(minutes, rate):
        t0 = time.perf_counter()
        for i in range(0, audio.size, chunk):
            starts += [
                t.event.detected_s
                for t in pipeline.push(audio[i : i + chunk]).transitions
                if isinstance(t, EventStarted)
            ]
        elapsed += time.perf_counter() - t0
    latencies = []
    for onset in onsets:
        after = [s - onset for s in starts if onset <= s <= onset + 5.0]
        if after:
            latencies.append(min(after))
    false_alarms = sum(1 for s in starts if not any(o <= s <= o + 5.0 for o in onsets))
    seconds = minutes * 60.0
    return {
        "audio_s": seconds,
        "hop_ms": hop * side.features.hop_ms,
        "decisions": decisions.describe(),
        "processing_s": round(elapsed, 2),
        "real_time_factor": round(elapsed / seconds, 5),
        "onset_to_decision_s_median": round(statistics.median(latencies), 3) if latencies else None,
        "synthetic_screams_detected": f"{len(latencies)}/{len(onsets)}",
        "other_events": false_alarms,
    }


PI4_VERIFIER_WINDOW_MS = 50.0  # YAMNet on a Raspberry Pi 4, per window (../shared/models/yamnet/README.md)


def _rss_mb() -> float:
    """Current resident memory of this process (VmRSS), MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def bench_verifier(
    verifier_path: Path,
    classifier: Classifier,
    decisions: DecisionParams,
    *,
    hop_frames: int,
    minutes: int,
    repeats: int,
    classes: list[str] | None = None,
    head: Path | None = None,
    attempts: int = 1,
) -> dict[str, Any]:
    """The second stage's cost (`[verifier]`, edge.verifier): memory to load it, one invoke on one
    thread, what a verdict costs (one invoke per window it hears) and, over the benchmark stream at
    the model's operating point, candidates, verdicts (more than one per vetoed candidate with
    `attempts` > 1) and verifier time per hour of audio. The Pi 4 figures scale the windows counted
    here by PI4_VERIFIER_WINDOW_MS (YAMNet's measured Pi 4 time, not ours)."""
    from edge.detector import EventStarted, EventVetoed, VetoLifted
    from edge.verifier import EventVerifier

    rss_before = _rss_mb()
    started = time.perf_counter()
    verifier = EventVerifier(
        verifier_path, classes=classes or ["Screaming"], threshold=0.5, head=head, attempts=attempts
    )
    load_ms = (time.perf_counter() - started) * 1000
    window = (0.1 * np.random.default_rng(2).standard_normal(verifier.window_samples)).astype(np.float32)
    invoke_ms = _median_ms(lambda: verifier.score(window), max(repeats, 5))
    rss_added = _rss_mb() - rss_before
    side = classifier.sidecar
    rate = 48000
    pipeline = DetectionPipeline(
        classifier, side.features, decisions, hop_frames=hop_frames, source_rate_hz=rate, verifier=verifier
    )
    counted = verifier.stats
    elapsed = 0.0
    candidates = 0
    for audio in scene_seconds(minutes, rate):
        t0 = time.perf_counter()
        for i in range(0, audio.size, rate // 10):
            transitions = pipeline.push(audio[i : i + rate // 10]).transitions
            candidates += sum(
                isinstance(t, EventVetoed) or (isinstance(t, EventStarted) and not isinstance(t, VetoLifted))
                for t in transitions
            )
        elapsed += time.perf_counter() - t0
    stats = verifier.stats
    verdicts = stats.checked - counted.checked
    windows = stats.windows - counted.windows
    hours = minutes / 60
    per_verdict = windows / max(verdicts, 1)
    return {
        "model": str(verifier_path),
        "size_bytes": verifier_path.stat().st_size,
        "classes": verifier.classes,
        "head": str(head) if head is not None else "",
        "load_ms": round(load_ms, 1),
        "rss_added_mb": round(rss_added, 1),
        "invoke_ms": round(invoke_ms, 3),
        "audio_s": minutes * 60.0,
        "decisions": decisions.describe(),
        "attempts": attempts,
        "candidates": candidates,
        "candidates_per_hour": round(candidates / hours, 1),
        "verdicts_per_hour": round(verdicts / hours, 1),
        "windows_per_verdict": round(per_verdict, 2),
        "ms_per_verdict": round(per_verdict * invoke_ms, 3),
        "verifier_ms_per_hour": round(windows / hours * invoke_ms, 3),
        "real_time_factor_with_verifier": round(elapsed / (minutes * 60.0), 5),
        "pi4_ms_per_verdict": round(per_verdict * PI4_VERIFIER_WINDOW_MS, 1),
        "pi4_cpu_share": round(windows / hours * PI4_VERIFIER_WINDOW_MS / 3.6e6, 6),
    }


def _write_scene(path: Path, seconds: float, rate: int) -> list[float]:
    """A scene for the live benchmarks: room tone with a scream-like sound every 10 s from 3-4 s
    (`scream_onsets`)."""
    rng = np.random.default_rng(5)
    audio = np.concatenate([room_tone(1.0, rate, rng) for _ in range(int(seconds))])
    onsets = scream_onsets(len(np.arange(3.0, seconds - 3.0, 10.0)), 3.0, 10.0)
    for onset in onsets:
        clip = scream_like(1.5, rate, rng)
        i = int(onset * rate)
        audio[i : i + clip.size] += clip[: audio.size - i]
    write_wav(path, audio, rate)
    return onsets


def bench_listen(model: Path, seconds: float) -> dict[str, Any]:
    """`scream listen` replaying a 48 kHz file in real time: resident memory and CPU share of the real
    command (a child process, GPIO off), then scream onset to LED on through gpiozero's mock pins."""
    import subprocess
    import tempfile

    from edge.service import listen_argv

    result: dict[str, Any] = {"audio_s": seconds}
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "scene.wav"
        onsets = _write_scene(wav, seconds, 48000)
        config = Path(tmp) / "bench.toml"
        config.write_text(f'[paths]\nstate_dir = "{tmp}/state"\n[gpio]\nenabled = false\n[model]\nwatch = false\n')
        # Peak RSS from the child's own /proc VmHWM (exec resets it): RUSAGE_CHILDREN would count the
        # parent's pages shared at fork time.
        started = time.monotonic()
        proc = subprocess.Popen(
            listen_argv(config=config, model=model, source=wav),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        peak_kb, cpu_ticks = 0, 0.0
        status_file, stat_file = Path(f"/proc/{proc.pid}/status"), Path(f"/proc/{proc.pid}/stat")
        while proc.poll() is None:
            try:
                for line in status_file.read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        peak_kb = max(peak_kb, int(line.split()[1]))
                fields = stat_file.read_text().rsplit(")", 1)[1].split()
                cpu_ticks = float(fields[11]) + float(fields[12])  # utime + stime
            except (OSError, ValueError, IndexError):
                pass
            time.sleep(0.2)
        stdout, stderr = proc.communicate(timeout=seconds * 3 + 60)
        wall = time.monotonic() - started
        if proc.returncode != 0:
            raise RuntimeError(f"scream listen failed: {stderr.strip().splitlines()[-1:]}")
        result["listen_peak_rss_mb"] = round(peak_kb / 1024, 1)
        result["listen_cpu_share"] = round(cpu_ticks / os.sysconf("SC_CLK_TCK") / wall, 4)
        result["listen_events"] = stdout.count("ALARM ON")
        for key, detector in (("onset_to_led", None), ("onset_to_led_fast", FAST_DETECTOR)):
            delays = _onset_to_led(model, wav, onsets, Path(tmp), detector)
            result[f"{key}_s"] = round(statistics.median(delays), 3) if delays else None
            result[f"{key}_range_s"] = [round(min(delays), 3), round(max(delays), 3)] if delays else None
    result["screams"] = len(onsets)
    return result


FAST_DETECTOR = {"hop_ms": 100, "patience_windows": 1, "patience_of": 1, "smoothing_windows": 1}


class _LedOnTimes:
    """The GPIO alarm, noting (monotonic time) when each event's LED has been switched on."""

    name = "gpio"

    def __init__(self, alarm: Any) -> None:
        self.alarm = alarm
        self.on_at: list[float] = []

    def handle(self, message: Any) -> None:
        from edge.sinks import AlarmMessage

        self.alarm.handle(message)
        if isinstance(message, AlarmMessage) and message.kind == "start" and "led" in message.outputs:
            self.on_at.append(time.monotonic())

    def close(self) -> None:
        self.alarm.close()


def _onset_to_led(
    model: Path, wav: Path, onsets: list[float], tmp: Path, detector: dict[str, int] | None = None
) -> list[float]:
    """Seconds from each onset to the LED pin going high (gpiozero's mock pins), for the onsets that
    raised it within 5 s."""
    try:
        from gpiozero.pins.mock import MockFactory
    except ImportError:
        return []
    from edge.config import parse_config
    from edge.service import DetectorService
    from edge.sinks import GpioAlarm, SinkWorker
    from edge.sources import FileSource

    config = parse_config(
        {"paths": {"state_dir": str(tmp / "led")}, "model": {"watch": False}, "detector": detector or {}}
    )
    pins = MockFactory()
    led = _LedOnTimes(GpioAlarm(config.gpio, pin_factory=pins))
    source = FileSource(wav, chunk_ms=config.audio.chunk_ms, realtime=True)
    service = DetectorService(config, source=source, model_path=model, outputs=[SinkWorker(led)])
    started = time.monotonic()
    service.run()
    led_on = [t - started for t in led.on_at]
    delays = [min((on - onset for on in led_on if onset <= on <= onset + 5.0), default=None) for onset in onsets]
    pins.reset()
    return [d for d in delays if d is not None]


def bench_review(model: Path, *, clips: int, repeats: int) -> dict[str, Any]:
    """`scream review` over a clip store of `clips` synthetic 5 s clips with their event log, on
    127.0.0.1: the page's weight and the median latency of each request a labelling session makes."""
    import http.client
    import json as json_module
    import tempfile
    import threading

    from edge import synth
    from edge.audio import write_wav
    from edge.review import build_app, make_server

    rate = 16000
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "clips"
        store.mkdir()
        rng = np.random.default_rng(5)
        names = []
        with (Path(tmp) / "events.jsonl").open("w") as log:
            for i in range(clips):
                name = f"20261202T{10 + i // 3600:02d}{i // 60 % 60:02d}{i % 60:02d}_{i:012x}.wav"
                audio = synth.room_tone(5.0, rate, rng)
                audio[rate : rate + 2 * rate] += synth.scream_like(2.0, rate, rng)
                write_wav(store / name, audio, rate)
                record = {
                    "type": "event_end",
                    "id": f"{i:012x}",
                    "clip": name,
                    "start": 1.8e9 + 60 * i,
                    "end": 1.8e9 + 60 * i + 2.0,
                    "peak_score": 0.9,
                    "site": "bench",
                }
                log.write(json_module.dumps(record) + "\n")
                names.append(name)
        app = build_app(clips_dir=store, event_log=Path(tmp) / "events.jsonl", model=model, token="")
        server = make_server(app, "127.0.0.1:0")
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        port = int(server.server_address[1])

        def get(path: str, method: str = "GET", body: bytes | None = None) -> bytes:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            headers = {"Content-Type": "application/json"} if body else {}
            conn.request(method, path, body=body, headers=headers)
            reply = conn.getresponse()
            data = reply.read()
            conn.close()
            if reply.status != 200:
                raise RuntimeError(f"review bench: {path} gave {reply.status}: {data[:200]!r}")
            return data

        try:
            weight = {path: len(get(path)) for path in ("/", "/static/review.js", "/static/review.css")}
            listing = len(get("/api/events?label=all"))
            first = time.perf_counter()
            get(f"/api/timeline/{names[0]}")  # the first request scores the clip; later ones are cached
            timeline_first = round((time.perf_counter() - first) * 1000, 3)
            label = json_module.dumps({"clip": names[1], "label": "non_scream"}).encode()
            return {
                "clips": clips,
                "page_bytes": sum(weight.values()),
                "page_files": weight,
                "listing_bytes": listing,
                "clip_bytes": len(get(f"/clips/{names[0]}")),
                "timeline_bytes": len(get(f"/api/timeline/{names[0]}")),
                "page_ms": _median_ms(lambda: get("/"), repeats),
                "listing_ms": _median_ms(lambda: get("/api/events?label=all"), repeats),
                "clip_ms": _median_ms(lambda: get(f"/clips/{names[0]}"), repeats),
                "timeline_first_ms": timeline_first,
                "timeline_cached_ms": _median_ms(lambda: get(f"/api/timeline/{names[0]}"), repeats),
                "label_ms": _median_ms(lambda: get("/api/labels", "POST", label), repeats),
            }
        finally:
            server.shutdown()
            server.server_close()


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_bench(
    model: Path,
    *,
    quick: bool = False,
    verifier: Path | None = None,
    verifier_classes: list[str] | None = None,
    verifier_head: Path | None = None,
    verifier_attempts: int = 1,
) -> dict[str, Any]:
    classifier = Classifier(model, expected_features=FeatureParams())
    side = classifier.sidecar
    # The decisions `listen` runs with the default config (the model's operating point, the gate).
    decisions, hop = detection_settings(side)
    repeats = 5 if quick else 50
    # Edge-only measurements first: peak RSS is read before librosa or TensorFlow are imported.
    stream = bench_stream(classifier, decisions, 2 if quick else 60, hop_frames=hop)
    # The latency side of the operating point: a 100 ms hop with the model's patience over the
    # same time span, and with an alarm on the first window at or above `on`.
    fast, fast_hop = detection_settings(side, DetectorConfig(hop_ms=FAST_DETECTOR["hop_ms"]))
    faster = [bench_stream(classifier, fast, 2 if quick else 10, hop_frames=fast_hop)]
    fastest, _ = detection_settings(side, DetectorConfig(**FAST_DETECTOR))
    if fastest != fast:  # else that row is the one above again
        faster.append(bench_stream(classifier, fastest, 2 if quick else 10, hop_frames=fast_hop))
    invoke = bench_invoke(classifier, repeats)
    edge_rss = round(peak_rss_mb(), 1)
    second_stage = (
        bench_verifier(
            verifier,
            classifier,
            decisions,
            hop_frames=hop,
            minutes=2 if quick else 60,
            repeats=repeats,
            classes=verifier_classes,
            head=verifier_head,
            attempts=verifier_attempts,
        )
        if verifier is not None
        else None
    )
    result: dict[str, Any] = {
        "machine": machine_description(),
        "model": {"path": str(model), "size_bytes": model.stat().st_size, "sha256": classifier.sha256[:16]},
        "stream": stream,
        "stream_faster": faster,
        "invoke": invoke,
        "edge_peak_rss_mb": edge_rss,
        "verifier": second_stage,
        "listen": bench_listen(model, 8.0 if quick else 60.0),
        "review": bench_review(model, clips=20 if quick else 200, repeats=repeats),
        "logmel": [
            bench_logmel(side.features, 1.0, 4 * repeats),
            bench_logmel(side.features, 60.0, max(repeats // 3, 3)),
        ],
    }
    result["skipped"] = [name for name in REFERENCE_NAMES if result["logmel"][0].get(f"{name}_ms") is None]
    return result


def format_table(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [
        f"machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}, numpy {m['numpy']}",
        f"model: {result['model']['path']} ({result['model']['size_bytes']} bytes)",
        "",
        f"{'what':<52} {'value':>12}",
    ]

    def add(name: str, value: object) -> None:
        lines.append(f"{name:<52} {'skipped' if value is None else value!s:>12}")

    for row in result["logmel"]:
        s = int(row["audio_s"])
        add(f"log-mel {s} s, numpy (ms, median)", row["numpy_ms"])
        add(f"log-mel {s} s, librosa STFT (ms)", row.get("librosa_ms"))
        if row.get("librosa_ms"):
            add("  numpy speed-up over librosa", f"{row['librosa_ms'] / row['numpy_ms']:.2f}x")
            add("  max |numpy - librosa|", f"{row['librosa_max_abs_diff']:.2e}")
        add(f"log-mel {s} s, tf.signal (ms)", row.get("tf_signal_ms"))
        if row.get("tf_signal_ms"):
            add("  max |numpy - tf.signal|", f"{row['tf_signal_max_abs_diff']:.2e}")
    inv = result["invoke"]
    add("int8 invoke per window, 1 thread (ms)", inv["int8_invoke_ms"])
    add("float invoke per window, 1 thread (ms)", inv["float_invoke_ms"])
    if inv["float_invoke_ms"]:
        add("  float / int8 time", f"{inv['float_invoke_ms'] / inv['int8_invoke_ms']:.2f}x")
        add("  model size int8 / float (bytes)", f"{result['model']['size_bytes']} / {inv['float_size_bytes']}")
    st = result["stream"]
    add(f"stream {int(st['audio_s'])} s at 48 kHz: real-time factor", st["real_time_factor"])
    for row in [st, *result["stream_faster"]]:
        add(
            f"onset to decision, {row['hop_ms']:.0f} ms hop, {row['decisions']} (s)",
            row["onset_to_decision_s_median"] if row["onset_to_decision_s_median"] is not None else "no alarm",
        )
        if row is not st:
            add("  real-time factor", row["real_time_factor"])
    add("edge pipeline peak resident memory (MB)", result["edge_peak_rss_mb"])
    ve = result["verifier"]
    if ve is None:
        lines.append("verifier: not measured (scream bench --verifier MODEL.tflite)")
    else:
        head = f", head {Path(ve['head']).name}" if ve.get("head") else ""
        add(f"verifier {Path(ve['model']).name} ({ve['size_bytes']} bytes{head}): load (ms)", ve["load_ms"])
        add("  resident memory it adds (MB)", ve["rss_added_mb"])
        add("  invoke per window, 1 thread (ms, median)", ve["invoke_ms"])
        add(f"  candidates per hour of the stream ({ve['decisions']})", ve["candidates_per_hour"])
        add(f"  verdicts per hour (up to {ve['attempts']} per candidate)", ve["verdicts_per_hour"])
        add("  windows per verdict", ve["windows_per_verdict"])
        add("  cost per verdict, added before its alarm (ms)", ve["ms_per_verdict"])
        add("  verifier time per hour of audio (ms)", ve["verifier_ms_per_hour"])
        add("  stream real-time factor with the verifier", ve["real_time_factor_with_verifier"])
        pi4 = f"  Pi 4 estimate at {PI4_VERIFIER_WINDOW_MS:g} ms a window: per verdict (ms)"
        add(pi4, ve["pi4_ms_per_verdict"])
        add("  Pi 4 estimate: share of one core", ve["pi4_cpu_share"])
    li = result["listen"]
    add(f"scream listen, {int(li['audio_s'])} s real time: peak RSS (MB)", li["listen_peak_rss_mb"])
    add("scream listen: CPU share of one core", li["listen_cpu_share"])
    for key, label in (
        ("onset_to_led", "scream onset to LED on, replay (s, median)"),
        ("onset_to_led_fast", "  with hop_ms = 100 and 1 of 1 window (s, median)"),
    ):
        add(label, li[f"{key}_s"] if li[f"{key}_s"] is not None else "no alarm")
        if li.get(f"{key}_range_s"):
            low, high = li[f"{key}_range_s"]
            add(f"    fastest-slowest of {li['screams']} screams (s)", f"{low}-{high}")
    rv = result["review"]
    add("scream review page weight: HTML+JS+CSS (bytes)", rv["page_bytes"])
    add(f"  listing of {rv['clips']} clips (bytes)", rv["listing_bytes"])
    add("  one clip's picture and timeline (bytes)", rv["timeline_bytes"])
    for key, label in (
        ("page_ms", "  GET the page (ms, median)"),
        ("listing_ms", f"  GET the listing of {rv['clips']} clips (ms)"),
        ("clip_ms", "  GET one 5 s clip (ms)"),
        ("timeline_first_ms", "  GET a timeline, first time: scored (ms)"),
        ("timeline_cached_ms", "  GET a timeline again: cached (ms)"),
        ("label_ms", "  POST a label (ms)"),
    ):
        add(label, rv[key])
    if result["skipped"]:
        lines.append("skipped (not installed): " + ", ".join(result["skipped"]))
    return "\n".join(lines)
