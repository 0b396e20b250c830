"""The `scream` command: the edge's own subcommands, plus those other packages register.

`train` (train, crossval, evaluate, corpus build) and `deploy` add theirs through the
`scream.commands` entry point group in pyproject.toml (as pytest finds its plugins): each entry
point is a `register(subparsers, formatter)` function. So edge/ imports neither train/ nor deploy/
(tests/test_layout.py checks the imports). Heavy modules (the TFLite runtime, TensorFlow for
training) are imported inside the subcommands that need them, so `scream --help` stays fast on a Pi.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.metadata
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge.errors import ExtraMissingError, ScreamError

if TYPE_CHECKING:
    from edge.config import Config
    from edge.sinks import Sink

EXIT_OK, EXIT_SOME_FAILED, EXIT_FATAL = 0, 1, 2
DEFAULT_MODEL_NAME = "scream-v6.tflite"  # deploy/install.sh BUNDLED_MODEL names it too
COMMANDS_GROUP = "scream.commands"


def default_model_path() -> Path:
    """$SCREAM_MODEL, else the model bundled in the project's models/ folder."""
    env = os.environ.get("SCREAM_MODEL")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1] / "models" / DEFAULT_MODEL_NAME


def configured_model(model: str | None, config: Config) -> Path:
    """--model, else the config's [model].path, else the bundled model: what listen and review load."""
    return Path(model or config.model.path or default_model_path())


def error(message: str) -> None:
    print(f"scream: error: {message}", file=sys.stderr, flush=True)


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def threshold(text: str) -> float:
    """--threshold: an `on` threshold, a number strictly between 0 and 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number in (0, 1), got {text!r}") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1), strictly between 0 and 1, got {value:g}")
    return value


def require_extra(command: str, extra: str, *modules: str) -> None:
    """Import the modules a command needs before it starts, so a missing one is a clear error
    naming the extra to install, not a traceback halfway through a run."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ExtraMissingError(exc.name or module, extra, command) from exc


def _load_classifier(model: str | None):  # type: ignore[no-untyped-def]
    from edge.classifier import Classifier
    from edge.features import FeatureParams

    path = Path(model) if model else default_model_path()
    if not model and not path.exists():
        raise ScreamError(
            f"no default model is installed yet ({path} is missing): train one with "
            "'scream train --data CORPUS --out models/scream-v6 --min-teacher-scream 0.05' or pass --model"
        )
    # The edge computes the project's one feature contract; a model trained on others is refused.
    return Classifier(path, expected_features=FeatureParams())


def cmd_detect(args: argparse.Namespace) -> int:
    from edge.audio import find_audio_files
    from edge.config import load_config
    from edge.errors import AudioError
    from edge.pipeline import analyse_file, site_settings
    from edge.verifier import EventVerifier

    classifier = _load_classifier(args.model)
    config = load_config(args.config)
    verifier = EventVerifier.from_config(config.verifier)  # loaded once for every file
    site_settings(classifier.sidecar, config, verifier)  # a pair the config needs and the model lacks: stop here
    analysed = failed = 0
    for target in args.paths:
        files = find_audio_files(target)
        if not files:
            files_error = f"{target}: no audio files found in this directory"
            failed += 1
            _report_failure(args, target, files_error)
            continue
        for path in files:
            try:
                report = analyse_file(path, classifier, config, threshold=args.threshold, verifier=verifier)
            except (AudioError, ExtraMissingError) as exc:  # one bad file never stops the batch
                failed += 1
                _report_failure(args, str(path), str(exc))
                continue
            analysed += 1
            if args.json:
                print(json.dumps(report.to_json()), flush=True)
            else:
                verdict = "SCREAM" if report.is_scream else "no scream"
                print(
                    f"{path}: {verdict:<9} peak {report.peak_score:.2f}  {report.duration_s:.1f} s  "
                    f"{len(report.events)} segment(s)",
                    flush=True,
                )
                for event in report.events:
                    verified = "" if event.verify_score is None else f"  verified {event.verify_score:.2f}"
                    print(
                        f"    {event.start_s:7.2f} - {event.end_s or 0.0:7.2f} s  peak {event.peak_score:.2f}{verified}"
                    )
                for event in report.vetoed:
                    print(f"    {event.start_s:7.2f} s  vetoed by the verifier ({event.verify_score or 0.0:.2f})")
                for warning in report.warnings:
                    print(f"    warning: {warning}")
    print(f"scream detect: {analysed} file(s) analysed, {failed} failed", file=sys.stderr)
    return EXIT_OK if failed == 0 else EXIT_SOME_FAILED


def _report_failure(args: argparse.Namespace, path: str, message: str) -> None:
    if args.json:
        print(json.dumps({"path": path, "status": "error", "error": message}), flush=True)
    else:
        error(message)


def cmd_demo(args: argparse.Namespace) -> int:
    from edge.detector import EventEnded, EventStarted
    from edge.pipeline import DetectionPipeline, chunked
    from edge.synth import demo_scene

    classifier = _load_classifier(args.model)
    side = classifier.sidecar
    rate = side.features.sample_rate_hz
    pipeline = DetectionPipeline.for_model(classifier, source_rate_hz=rate, threshold=args.threshold)
    decisions = pipeline.detector.params
    audio, truth = demo_scene(rate, seed=args.seed)
    print(f"demo: {audio.size / rate:.0f} s scene synthesised by edge/synth.py (never used for training)")
    print("truth:  " + "  ".join(f"{t.kind} {t.start_s:.1f}-{t.end_s:.1f} s" for t in truth))
    print(
        f"model:  {classifier.model_path.name} sha256 {classifier.sha256[:12]}  runtime {classifier.runtime}  "
        f"on {decisions.on_threshold:.2f} / off {decisions.off_threshold:.2f}, "
        f"an event starts at {decisions.describe()}, loudness gate {decisions.loudness_gate_dbfs:g} dBFS"
    )
    result = pipeline.run(chunked(audio, rate // 10))  # 100 ms chunks, as a microphone delivers them
    scores = result.windows
    print("scores per window (each mark is one hop; '#' at or above on, '+' above off, '.' below):")
    marks = "".join(
        "#" if s.score >= decisions.on_threshold else "+" if s.score >= decisions.off_threshold else "." for s in scores
    )
    per_line = round(5.0 / side.hop_s)
    for i in range(0, len(marks), per_line):
        print(f"  {scores[i].end_s:5.1f} s  {marks[i : i + per_line]}")
    print("events:")
    for transition in result.transitions:
        event = transition.event
        if isinstance(transition, EventStarted):
            print(f"  {event.detected_s:6.2f} s  ALARM ON   event {event.number} (onset {event.start_s:.2f} s)")
        elif isinstance(transition, EventEnded):
            print(f"  {event.end_s or 0.0:6.2f} s  alarm off  event {event.number} peak {event.peak_score:.2f}")
    if not result.transitions:
        print("  none")
    return EXIT_OK


def cmd_explain(args: argparse.Namespace) -> int:
    import datetime as dt

    from edge.config import load_config
    from edge.explain import explain

    classifier = _load_classifier(args.model)
    config = load_config(args.config)
    start = dt.datetime.fromisoformat(args.start) if args.start else None
    if config.schedule and start is None:
        error("note: the config has schedules; pass --start to place the recording in time")
    result = explain(args.file, args.out, classifier, config, start, threshold=args.threshold)
    print(json.dumps(result) if args.json else f"wrote {args.out}: {len(result['events'])} event(s)")
    return EXIT_OK


def cmd_bench(args: argparse.Namespace) -> int:
    from edge.bench import format_table, run_bench

    model = Path(args.model) if args.model else default_model_path()
    result = run_bench(
        model,
        quick=args.quick,
        verifier=Path(args.verifier) if args.verifier else None,
        verifier_classes=args.verifier_classes,
        verifier_head=Path(args.verifier_head) if args.verifier_head else None,
        verifier_attempts=args.verifier_attempts,
    )
    print(json.dumps(result, indent=2) if args.json else format_table(result))
    return EXIT_OK


def build_sinks(config: Config, *, pin_factory: Any = None) -> tuple[list[Sink], dict[str, str]]:
    """The outputs a config asks for; GPIO that cannot start is reported, not fatal."""
    import logging

    from edge.sinks import ClipSaver, ConsoleLog, EventLog, GpioAlarm

    sinks: list[Sink] = [ConsoleLog()]
    unavailable: dict[str, str] = {}
    if config.gpio.enabled:
        try:
            sinks.append(GpioAlarm(config.gpio, pin_factory=pin_factory))
        except Exception as exc:  # gpiozero raises many kinds (BadPinFactory, PinInvalidPin, ...)
            unavailable["gpio"] = f"{type(exc).__name__}: {exc}"
            logging.getLogger("scream").warning(
                "no GPIO here (%s): running without LED and buzzer, and `scream status` reports it; off a Pi "
                "set [gpio] enabled = false, or GPIOZERO_PIN_FACTORY=mock to exercise the GPIO path",
                f"{type(exc).__name__}: {exc}",
            )
    sinks.append(EventLog(config.event_log, config.state_path(config.event_log.path)))
    if config.clips.enabled:
        sinks.append(ClipSaver(config.clips, config.state_path(config.clips.dir)))
    if config.mqtt.enabled or config.webhook.enabled:
        from edge.alerts import AlertChannel, MqttTransport, Outbox, WebhookTransport

        outbox = Outbox(config.state_path(config.outbox.path), max_messages=config.outbox.max_messages)
        if config.mqtt.enabled:
            sinks.append(AlertChannel("mqtt", outbox, MqttTransport(config.mqtt, config.site), config.outbox))
        if config.webhook.enabled:
            sinks.append(AlertChannel("webhook", outbox, WebhookTransport(config.webhook), config.outbox))
    return sinks, unavailable


def cmd_listen(args: argparse.Namespace) -> int:
    import logging
    import signal

    from edge.config import load_config
    from edge.service import DetectorService
    from edge.sinks import SinkWorker
    from edge.sources import AudioSource, FileSource, PyAudioSource
    from edge.systemd import SystemdNotifier

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    config = load_config(args.config)
    model = configured_model(args.model, config)
    if args.check_config:
        classifier = _load_classifier(str(model))
        print(
            f"config OK: site {config.site.name!r}, model {model} (sha256 {classifier.sha256[:12]}), "
            f"{_site_summary(classifier, config)}, {len(config.schedule)} schedule window(s), "
            f"state in {config.state_dir}"
        )
        return EXIT_OK
    source: AudioSource
    if args.source:
        source = FileSource(args.source, chunk_ms=config.audio.chunk_ms, realtime=not args.fast)
    else:
        source = PyAudioSource(
            config.audio.device,
            sample_rate_hz=config.audio.sample_rate_hz,
            chunk_ms=config.audio.chunk_ms,
            queue_s=config.audio.queue_s,
        )
    sinks, unavailable = build_sinks(config)
    log = logging.getLogger("scream")
    log.info(
        "state in %s: events %s, clips %s, status %s",
        config.state_dir,
        config.state_path(config.event_log.path),
        config.state_path(config.clips.dir) if config.clips.enabled else "off",
        config.state_path(config.paths.status_file),
    )
    service = DetectorService(
        config,
        source=source,
        model_path=model,
        outputs=[SinkWorker(s) for s in sinks],
        status_path=config.state_path(config.paths.status_file),
        notifier=SystemdNotifier(),
        unavailable_outputs=unavailable,
    )
    signal.signal(signal.SIGTERM, lambda *_: service.stop_event.set())
    signal.signal(signal.SIGINT, lambda *_: service.stop_event.set())
    signal.signal(signal.SIGHUP, lambda *_: service.reload_requested.set())
    return service.run()


def cmd_status(args: argparse.Namespace) -> int:
    from edge.config import load_config
    from edge.health import problems_in, read_status

    config = load_config(args.config)
    path = config.state_path(config.paths.status_file)
    if not path.exists():
        error(f"no status at {path}: is 'scream listen' running with this config?")
        return EXIT_FATAL
    status = read_status(path)
    problems = problems_in(status)
    status["problems"] = problems
    if args.json:
        print(json.dumps(status, indent=2, sort_keys=True))
    else:
        print(f"device      {status['device']} ({status['device_state']}), overflows {status['overflows']}")
        print(f"model       {status['model_path']} sha256 {status['model_sha256'][:12]}")
        print(f"events      {status['events']} (active: {status['event_active']}), uptime {status['uptime_s']:.0f} s")
        verifier = status.get("verifier") or {}
        if verifier:
            print(
                f"verifier    {verifier['model']}: {verifier['checked']} verdicts (up to "
                f"{verifier.get('attempts', 1)} a candidate), {verifier['vetoed']} below threshold "
                f"{verifier['threshold']:g} ({verifier.get('settings', 'config')}), "
                f"{verifier['invoke_ms_total']:.0f} ms in all"
            )
        for name, out in sorted(status.get("outputs", {}).items()):
            detail = ", ".join(f"{k} {v}" for k, v in sorted(out.items()) if v not in ("", None))
            print(f"output      {name}: {detail}")
        print("health      " + ("OK" if not problems else "; ".join(problems)))
    return EXIT_OK if not problems else EXIT_SOME_FAILED


def cmd_devices(args: argparse.Namespace) -> int:
    from edge.sources import list_input_devices

    devices = list_input_devices()
    if args.json:
        print(json.dumps([d.__dict__ for d in devices], indent=2))
    for d in devices if not args.json else []:
        rates = ", ".join(str(r) for r in d.supported_rates_hz) or "none probed"
        print(f"{d.index:>3}  {d.name}  ({d.channels} ch, default {d.default_rate_hz} Hz; supports {rates})")
    if not devices:
        error("no audio input devices found")
        return EXIT_SOME_FAILED
    return EXIT_OK


def _site_summary(classifier: Any, config: Config) -> str:
    """How a site's config runs this model: `on`, patience and the second stage with its settings
    (edge.pipeline.site_settings; a ModelError when the config needs a pair the model has not)."""
    from edge.pipeline import site_settings
    from edge.verifier import EventVerifier

    verifier = EventVerifier.from_config(config.verifier)
    decisions, _, plan = site_settings(classifier.sidecar, config, verifier)
    rule = f"on {decisions.on_threshold:g}, {decisions.describe()}"
    if verifier is None or plan is None:
        return f"{rule}, no verifier"
    return f"{rule}, verifier {verifier.model_path} ({verifier.verdict}; {plan.describe()})"


def cmd_check_model(args: argparse.Namespace) -> int:
    import numpy as np

    classifier = _load_classifier(args.model)
    site = ""
    if args.config:
        from edge.config import load_config

        site = _site_summary(classifier, load_config(args.config))
    frames, mels = classifier.input_shape
    rng = np.random.default_rng(0)
    scores = [classifier.score(rng.normal(-8.0, 2.0, size=(frames, mels)).astype(np.float32)) for _ in range(3)]
    if not all(0.0 <= s <= 1.0 for s in scores):
        raise ScreamError(f"model {args.model} returned scores outside [0, 1]: {scores}")
    side = classifier.sidecar
    print(
        json.dumps(
            {
                "model": str(classifier.model_path),
                "sha256": classifier.sha256,
                "feature_hash": side.feature_hash,
                "window_frames": side.window_frames,
                "hop_frames": side.hop_frames,
                "runtime": classifier.runtime,
                "thresholds": side.operating_point.to_sidecar(),
                "verification": [p.to_sidecar() for p in side.verification],
                **({"site": site} if args.config else {}),
                "ok": True,
            }
        )
    )
    return EXIT_OK


def _clip_store(args: argparse.Namespace) -> tuple[Config, Path, Path]:
    """The config, clip folder and event log `listen` writes with this config (--clips overrides)."""
    from edge.config import load_config

    config = load_config(args.config)
    clips = Path(args.clips) if args.clips else config.state_path(config.clips.dir)
    return config, clips, config.state_path(config.event_log.path)


def cmd_review(args: argparse.Namespace) -> int:
    import logging

    from edge import review

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    config, clips, events = _clip_store(args)
    if not clips.is_dir():
        raise ScreamError(
            f"no clip store at {clips}: has 'scream listen' saved clips with this config? (or pass --clips)"
        )
    token = review.token_from(args.token, config.review.token)
    model = configured_model(args.model, config)
    app = review.build_app(
        clips_dir=clips, event_log=events, model=model, token=token, config=config, title=f"{config.site.name}: review"
    )
    bind = args.bind or config.review.bind

    def ready(url: str) -> None:
        print(f"review page for {clips} at {url}" + (" (open it with ?token=...)" if token else ""), flush=True)

    with contextlib.suppress(KeyboardInterrupt):
        review.serve(app, bind, ready=ready)
    return EXIT_OK


def cmd_labels(args: argparse.Namespace) -> int:
    """The device side of `scream deploy pull`: list the labelled clips, then mark fetched ones."""
    import socket

    from edge.labels import EventIndex

    config, clips, events = _clip_store(args)
    index = EventIndex(clips, events)
    if args.action == "list":
        from edge.classifier import sha256_file

        found, problems = index.events()
        labelled = [
            {**e.to_json(), "sha256": sha256_file(index.clip_path(e.clip)) if e.exists else ""}
            for e in found
            if e.label is not None
        ]
        print(
            json.dumps(
                {
                    "device": socket.gethostname(),
                    "site": config.site.name,
                    "clips_dir": str(clips),
                    "labelled": labelled,
                    "problems": problems,
                },
                indent=2,
            )
        )
        return EXIT_OK
    marked = index.labels.mark_exported(args.clips_to_mark)
    missing = sorted(set(args.clips_to_mark) - set(marked))
    print(json.dumps({"marked": marked, "not_labelled": missing}))
    return EXIT_OK if not missing else EXIT_SOME_FAILED


def build_parser(*, plugins: bool = True) -> argparse.ArgumentParser:
    """Every subcommand; with `plugins` False only the edge's own (no train/ or deploy/ import)."""
    parser = argparse.ArgumentParser(
        prog="scream",
        description="Edge scream detector: int8 TFLite CNN on log-mel features.",
        epilog="Exit status: 0 success, 1 some inputs failed (the rest were processed), 2 fatal error.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    formatter = argparse.RawDescriptionHelpFormatter

    detect = sub.add_parser(
        "detect",
        help="analyse audio files or folders",
        formatter_class=formatter,
        description="Replay audio files through the live detector's pipeline and report screams.",
        epilog="examples:\n  scream detect recording.wav\n  scream detect --json --threshold 0.9 clips/\n\n"
        "exit status: 0 every file analysed, 1 some files failed (each named on stderr), 2 fatal (model)",
    )
    detect.add_argument("paths", nargs="+", help="audio files or folders (searched recursively)")
    detect.add_argument("--model", help=f"model .tflite with its .json sidecar (default: models/{DEFAULT_MODEL_NAME})")
    detect.add_argument("--threshold", type=threshold, help="event start threshold in (0, 1); off keeps its ratio")
    detect.add_argument(
        "--config", help="a site's TOML config: its [detector] settings apply (default: the built-in ones, as listen)"
    )
    detect.add_argument("--json", action="store_true", help="one JSON object per file on stdout")
    detect.set_defaults(func=cmd_detect)

    demo = sub.add_parser(
        "demo",
        help="run the detector on a synthesised scene (no microphone, no data)",
        formatter_class=formatter,
        epilog="example:\n  scream demo",
    )
    demo.add_argument("--model", help="model .tflite (default: the bundled one)")
    demo.add_argument("--threshold", type=threshold, help="event start threshold in (0, 1)")
    demo.add_argument("--seed", type=int, default=7, help="scene seed")
    demo.set_defaults(func=cmd_demo)

    listen = sub.add_parser(
        "listen",
        help="run the live detector (microphone, or --source FILE replay)",
        formatter_class=formatter,
        epilog="examples:\n  scream listen\n  scream listen --config /etc/scream-detector/config.toml\n"
        "  scream listen --source scene.wav --fast\n  scream listen --config my.toml --check-config\n\n"
        "signals: SIGHUP reloads the model (a bad one is refused), SIGTERM drains outputs and stops.",
    )
    listen.add_argument("--config", help="TOML config file (default: built-in defaults)")
    listen.add_argument("--model", help="model .tflite (default: [model].path, else the bundled one)")
    listen.add_argument("--source", help="replay this audio file instead of the microphone")
    listen.add_argument("--fast", action="store_true", help="with --source: as fast as possible, not real time")
    listen.add_argument("--check-config", action="store_true", help="validate config and model, then exit")
    listen.set_defaults(func=cmd_listen)

    status = sub.add_parser(
        "status",
        help="health of a running 'scream listen'",
        formatter_class=formatter,
        epilog="example:\n  scream status --config /etc/scream-detector/config.toml\n\n"
        "exit status: 0 healthy, 1 problems found (listed), 2 no status file",
    )
    status.add_argument("--config", help="the same config file the service uses")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_status)

    devices = sub.add_parser(
        "devices",
        help="list audio input devices and their sample rates",
        formatter_class=formatter,
        epilog="example:\n  scream devices",
    )
    devices.add_argument("--json", action="store_true")
    devices.set_defaults(func=cmd_devices)

    check = sub.add_parser(
        "check-model",
        help="load a model and its sidecar, verify sha256 and contract, run one window",
        formatter_class=formatter,
        epilog="example:\n  scream check-model models/scream-v6.tflite\n\n"
        "exit status: 0 safe to use, 2 not (the reason is printed)",
    )
    check.add_argument("model")
    check.add_argument(
        "--config",
        help="also check that this config can run the model: its [verifier] with threshold 0 needs a "
        "verification pair the model recorded for that verifier (scream deploy push checks the device's)",
    )
    check.set_defaults(func=cmd_check_model)

    explain = sub.add_parser(
        "explain",
        help="draw why the detector fired or not (needs the 'plot' extra)",
        formatter_class=formatter,
        epilog="examples:\n  scream explain recording.wav --out recording.png\n"
        "  scream explain night.wav --out night.png --config config.toml --start 2026-11-24T21:30:00",
    )
    explain.add_argument("file")
    explain.add_argument("--out", required=True, help="PNG to write")
    explain.add_argument("--model", help="model .tflite (default: the bundled one)")
    explain.add_argument("--threshold", type=threshold, help="event start threshold in (0, 1)")
    explain.add_argument("--config", help="config whose [detector] settings and [[schedule]] windows to apply")
    explain.add_argument("--start", help="wall-clock time of the recording's start (ISO 8601), for schedules")
    explain.add_argument("--json", action="store_true")
    explain.set_defaults(func=cmd_explain)

    bench = sub.add_parser(
        "bench",
        help="measure log-mel, invoke, streaming speed and memory",
        formatter_class=formatter,
        epilog="examples:\n  scream bench\n  scream bench --quick --json\n"
        "  scream bench --verifier /opt/scream-detector/yamnet/yamnet.tflite\n\n"
        "librosa and TensorFlow are compared only when installed; the output says which were skipped.",
    )
    bench.add_argument("--model", help="model .tflite (default: the bundled one)")
    bench.add_argument("--quick", action="store_true", help="few repeats and 2 minutes of stream (for tests)")
    bench.add_argument(
        "--verifier", metavar="TFLITE", help="also measure this second stage ([verifier] model, e.g. yamnet.tflite)"
    )
    bench.add_argument(
        "--verifier-classes", nargs="+", metavar="NAME", help="its classes (default: Screaming), as [verifier] classes"
    )
    bench.add_argument("--verifier-head", metavar="JSON", help="its head file, as [verifier] head")
    bench.add_argument(
        "--verifier-attempts", type=int, default=1, metavar="N", help="verdicts per candidate, as [verifier] attempts"
    )
    bench.add_argument("--json", action="store_true", help="print JSON instead of a table")
    bench.set_defaults(func=cmd_bench)
    review = sub.add_parser(
        "review",
        help="label saved clips in a browser (a small local web page)",
        formatter_class=formatter,
        description="Serves the clip store and event log that 'scream listen' writes: each event's time, site, "
        "peak score, log-mel picture and score timeline, an audio player, and scream / not a scream / unsure "
        "buttons. Labels go to labels.tsv beside the clips. Binds to 127.0.0.1 unless told otherwise; any other "
        "address needs a token.",
        epilog="examples:\n  scream review --config /etc/scream-detector/config.toml\n"
        "  ssh -L 8080:127.0.0.1:8080 pi@hall.local   # then open http://localhost:8080/ on the desk machine\n"
        "  scream review --bind 0.0.0.0:8080 --token env:SCREAM_REVIEW_TOKEN",
    )
    review.add_argument("--config", help="the config 'scream listen' uses (for the clip folder and event log)")
    review.add_argument("--clips", help="the clip folder (default: the config's [clips].dir)")
    review.add_argument("--model", help="model for the score timelines (default: the config's, else the bundled one)")
    review.add_argument("--bind", help="HOST:PORT (default: [review].bind, 127.0.0.1:8080)")
    review.add_argument("--token", help="required off loopback; env:NAME reads $NAME (default: [review].token)")
    review.set_defaults(func=cmd_review)

    labels = sub.add_parser(
        "labels",
        help="list labelled clips as JSON, or mark clips fetched (what 'scream deploy pull' runs on a device)",
        formatter_class=formatter,
        epilog="examples:\n  scream labels list --config /etc/scream-detector/config.toml\n"
        "  scream labels mark-exported 20261202T101500_ab12cd34ef56.wav",
    )
    labels.add_argument("action", choices=("list", "mark-exported"))
    labels.add_argument("clips_to_mark", nargs="*", metavar="CLIP", help="with mark-exported: clip file names")
    labels.add_argument("--config")
    labels.add_argument("--clips", help="the clip folder (default: the config's [clips].dir)")
    labels.set_defaults(func=cmd_labels)
    if plugins:
        add_plugin_commands(sub, formatter)
    return parser


def _subcommands(parser: argparse.ArgumentParser) -> set[str]:
    return {
        name for action in parser._actions if isinstance(action, argparse._SubParsersAction) for name in action.choices
    }


def add_plugin_commands(sub: Any, formatter: type[argparse.HelpFormatter]) -> None:
    """Subcommands other packages register under the `scream.commands` entry point group."""
    for entry in sorted(importlib.metadata.entry_points(group=COMMANDS_GROUP), key=lambda e: e.name):
        entry.load()(sub, formatter)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(plugins=False)
    command = next((a for a in argv if not a.startswith("-")), None)
    if command not in _subcommands(parser):  # another package's command, or --help: load them all
        parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except ScreamError as exc:
        error(str(exc))
        return EXIT_FATAL
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
