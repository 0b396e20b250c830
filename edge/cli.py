"""The `scream` command: one entry point, subcommands wired here and nowhere else.

Heavy modules (the TFLite runtime, TensorFlow for training) are imported inside the
subcommands that need them, so `scream --help` stays fast on a Pi.
"""

from __future__ import annotations

import argparse
import importlib
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
DEFAULT_MODEL_NAME = "scream-v5.tflite"


def default_model_path() -> Path:
    """$SCREAM_MODEL, else the model bundled in the project's models/ folder."""
    env = os.environ.get("SCREAM_MODEL")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1] / "models" / DEFAULT_MODEL_NAME


def _error(message: str) -> None:
    print(f"scream: error: {message}", file=sys.stderr, flush=True)


def _load_classifier(model: str | None):  # type: ignore[no-untyped-def]
    from edge.classifier import Classifier
    from edge.features import FeatureParams

    path = Path(model) if model else default_model_path()
    if not model and not path.exists():
        raise ScreamError(
            f"no default model is installed yet ({path} is missing): train one with "
            "'scream train --data ../shared/data/scream-corpus-v1 --out models/scream-v5' or pass --model"
        )
    # The edge computes the project's one feature contract; a model trained on others is refused.
    return Classifier(path, expected_features=FeatureParams())


def _decision_params(classifier, threshold: float | None):  # type: ignore[no-untyped-def]
    params = classifier.sidecar.decision_params()
    return params.with_threshold(threshold) if threshold is not None else params


def cmd_detect(args: argparse.Namespace) -> int:
    from edge.audio import find_audio_files
    from edge.errors import AudioError
    from edge.pipeline import analyse_file

    classifier = _load_classifier(args.model)
    decisions = _decision_params(classifier, args.threshold)
    side = classifier.sidecar
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
                report = analyse_file(path, classifier, side.features, decisions, hop_frames=side.hop_frames)
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
                    print(f"    {event.start_s:7.2f} - {event.end_s or 0.0:7.2f} s  peak {event.peak_score:.2f}")
                for warning in report.warnings:
                    print(f"    warning: {warning}")
    print(f"scream detect: {analysed} file(s) analysed, {failed} failed", file=sys.stderr)
    return EXIT_OK if failed == 0 else EXIT_SOME_FAILED


def _report_failure(args: argparse.Namespace, path: str, message: str) -> None:
    if args.json:
        print(json.dumps({"path": path, "status": "error", "error": message}), flush=True)
    else:
        _error(message)


def cmd_demo(args: argparse.Namespace) -> int:
    from edge.detector import EventEnded, EventStarted
    from edge.pipeline import DetectionPipeline, chunked
    from edge.synth import demo_scene

    classifier = _load_classifier(args.model)
    side = classifier.sidecar
    decisions = _decision_params(classifier, args.threshold)
    rate = side.features.sample_rate_hz
    audio, truth = demo_scene(rate, seed=args.seed)
    print(f"demo: {audio.size / rate:.0f} s scene synthesised by edge/synth.py (never used for training)")
    print("truth:  " + "  ".join(f"{t.kind} {t.start_s:.1f}-{t.end_s:.1f} s" for t in truth))
    print(
        f"model:  {classifier.model_path.name} sha256 {classifier.sha256[:12]}  runtime {classifier.runtime}  "
        f"on {decisions.on_threshold:.2f} / off {decisions.off_threshold:.2f}, "
        f"an event starts at {decisions.describe()}"
    )
    pipeline = DetectionPipeline(classifier, side.features, decisions, hop_frames=side.hop_frames, source_rate_hz=rate)
    result = pipeline.run(chunked(audio, rate // 10))  # 100 ms chunks, as a microphone delivers them
    scores = result.scores
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


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _train_config(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    """The TrainConfig that `scream train`'s and `scream crossval`'s recipe options describe."""
    from train.pipeline import TrainConfig

    shape = {k: v for k, v in (("members", args.members), ("width", args.width)) if v is not None}
    return TrainConfig(
        **shape,
        epochs=args.epochs,
        seed=args.seed,
        split_by=args.split_by,
        cache_dir=args.cache or "",
        verbose=2,
        max_false_alarms_per_hour=args.max_false_alarms_per_hour,
        min_event_recall=args.min_event_recall,
        max_latency_s=args.max_latency,
    )


def _require_train_extra(command: str, *modules: str) -> None:
    """Import the heavy modules a train/ command needs before it starts, so a missing one is a clear
    error naming the extra, not a traceback halfway through a run."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ start-up chatter out
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ExtraMissingError(exc.name or module, "train", command) from exc


def cmd_train(args: argparse.Namespace) -> int:
    _require_train_extra("scream train", "tensorflow", "scipy")
    from train.pipeline import train

    if args.out.endswith(".tflite"):
        args.out = args.out[: -len(".tflite")]
    train(args.data, args.out, config=_train_config(args))
    return EXIT_OK


def cmd_crossval(args: argparse.Namespace) -> int:
    _require_train_extra("scream crossval", "tensorflow", "scipy")
    from train.crossval import crossval

    crossval(
        args.data,
        args.out,
        folds=args.folds,
        config=_train_config(args),
        scenes=args.scenes,
        seed=args.seed,
        baseline=args.baseline,
    )
    return EXIT_OK


def cmd_corpus_build(args: argparse.Namespace) -> int:
    _require_train_extra("scream corpus build", "soundfile")
    from train.corpus.build import build

    result = build(args.recipe, args.out, shared=args.shared, cache=args.cache, offline=args.offline)
    if args.json:
        from dataclasses import asdict

        from train.corpus.build import audit_counts, summary_tables

        tables = summary_tables(result)
        print(
            json.dumps(
                {
                    "out": str(result.out),
                    "clips": len(result.included()),
                    "totals": tables["totals"],
                    "audit": audit_counts(result.clips),
                    "duplicates": {
                        **asdict(result.duplicates),
                        "label_conflicts": [
                            [result.clips[i].path for i in s] for s in result.duplicates.label_conflicts
                        ],
                    },
                    "problems": [{"source": s, "why": w} for s, w in result.problems],
                    "skipped": [{"source": r.name, "path": p, "why": w} for r in result.sources for p, w in r.skipped],
                    "written": result.written,
                    "removed": result.removed,
                    "seconds": round(result.seconds, 1),
                }
            )
        )
    failed = result.problems or any(r.skipped for r in result.sources)
    return EXIT_SOME_FAILED if failed else EXIT_OK


def cmd_evaluate(args: argparse.Namespace) -> int:
    _require_train_extra("scream evaluate", "scipy", "matplotlib")
    from train.evaluate import evaluate

    evaluate(
        args.model,
        args.data,
        out_dir=args.out,
        splits_file=args.splits,
        split=args.split,
        cache_dir=args.cache or "",
        seed=args.seed,
        scenes=args.scenes,
        baseline=args.baseline,
    )
    return EXIT_OK


def cmd_deploy(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from deploy import remote

    targets = [
        remote.Target(
            host=host,
            port=args.port,
            identity=args.identity,
            known_hosts=args.known_hosts,
            root=args.root,
            remote_scream=args.remote_scream,
            systemctl=args.systemctl,
            confirm_timeout_s=args.confirm_timeout,
        )
        for host in args.hosts
    ]
    if args.action == "push":
        if not args.model:
            raise ScreamError("deploy push needs --model models/NAME.tflite")
        model = Path(args.model)
        if not model.exists():
            raise ScreamError(f"model {model} does not exist")
        outcomes = remote.run_many(remote.push, targets, model, parallel=args.parallel)
    elif args.action == "rollback":
        outcomes = remote.run_many(remote.rollback, targets, parallel=args.parallel)
    else:
        outcomes = remote.run_many(remote.status, targets, parallel=args.parallel)
    if args.json:
        print(json.dumps([asdict(o) for o in outcomes], indent=2))
    else:
        print(remote.summary_table(outcomes))
    return EXIT_OK if all(o.ok for o in outcomes) else EXIT_SOME_FAILED


def cmd_explain(args: argparse.Namespace) -> int:
    import datetime as dt

    from edge.config import load_config
    from edge.explain import explain
    from edge.service import decisions_for

    classifier = _load_classifier(args.model)
    config = load_config(args.config)
    side = classifier.sidecar
    decisions = decisions_for(config.detector, side, side.hop_frames)
    if args.threshold is not None:
        decisions = decisions.with_threshold(args.threshold)
    start = dt.datetime.fromisoformat(args.start) if args.start else None
    if config.schedule and start is None:
        _error("note: the config has schedules; pass --start to place the recording in time")
    result = explain(args.file, args.out, classifier, decisions, config, start)
    print(json.dumps(result) if args.json else f"wrote {args.out}: {len(result['events'])} event(s)")
    return EXIT_OK


def cmd_bench(args: argparse.Namespace) -> int:
    from edge.bench import format_table, run_bench

    model = Path(args.model) if args.model else default_model_path()
    result = run_bench(model, quick=args.quick)
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
            logging.getLogger("scream").warning("GPIO outputs unavailable, continuing without: %s", exc)
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
    model = Path(args.model or config.model.path or default_model_path())
    if args.check_config:
        classifier = _load_classifier(str(model))
        print(
            f"config OK: site {config.site.name!r}, model {model} (sha256 {classifier.sha256[:12]}), "
            f"{len(config.schedule)} schedule window(s), state in {config.state_dir}"
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
        _error(f"no status at {path}: is 'scream listen' running with this config?")
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
        _error("no audio input devices found")
        return EXIT_SOME_FAILED
    return EXIT_OK


def cmd_check_model(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    import numpy as np

    classifier = _load_classifier(args.model)
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
                "thresholds": asdict(side.thresholds),
                "ok": True,
            }
        )
    )
    return EXIT_OK


def _add_recipe_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--epochs", type=int, default=30, help="at most this many (early stopping on validation PR AUC)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--split-by",
        choices=("group", "source"),
        default="group",
        help="what splits deal whole: recording groups, or sources (the manifest's source column)",
    )
    parser.add_argument(
        "--members",
        type=_positive_int,
        help="networks to train (seeds seed, seed+1, ...) and ship averaged as one model",
    )
    parser.add_argument(
        "--width", type=_positive_int, help="channels of the first convolution; later blocks use 2x and 4x"
    )
    parser.add_argument("--cache", help="folder for decoded audio (default ~/.cache/scream-detector/waves)")
    point = parser.add_argument_group(
        "operating point", "how `on` and the k-of-n patience are chosen on validation scenes (train/operating_point.py)"
    )
    point.add_argument(
        "--max-false-alarms-per-hour",
        type=float,
        default=0.5,
        help="the most recall at or under this many false alarms per hour, if any candidate gets there",
    )
    point.add_argument(
        "--min-event-recall", type=float, default=0.5, help="candidates must catch this share of the screams"
    )
    point.add_argument(
        "--max-latency", type=float, default=1.0, help="... with a median scream onset to alarm of at most this (s)"
    )


def build_parser() -> argparse.ArgumentParser:
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
    detect.add_argument("--threshold", type=float, help="event start threshold in (0, 1); off keeps its ratio")
    detect.add_argument("--json", action="store_true", help="one JSON object per file on stdout")
    detect.set_defaults(func=cmd_detect)

    demo = sub.add_parser(
        "demo",
        help="run the detector on a synthesised scene (no microphone, no data)",
        formatter_class=formatter,
        epilog="example:\n  scream demo",
    )
    demo.add_argument("--model", help="model .tflite (default: the bundled one)")
    demo.add_argument("--threshold", type=float, help="event start threshold in (0, 1)")
    demo.add_argument("--seed", type=int, default=7, help="scene seed")
    demo.set_defaults(func=cmd_demo)

    train = sub.add_parser(
        "train",
        help="train and export an int8 model (needs the 'train' extra)",
        formatter_class=formatter,
        epilog="example:\n  scream train --data ../shared/data/scream-corpus-v1 --out models/scream-v5",
    )
    train.add_argument(
        "--data", required=True, help="manifest (TSV/CSV: path, label[, group]) or folder with scream/ and non_scream/"
    )
    train.add_argument(
        "--out", required=True, help="output path without suffix: writes NAME.tflite, NAME.json, NAME-run/"
    )
    _add_recipe_arguments(train)
    train.set_defaults(func=cmd_train)

    cv = sub.add_parser(
        "crossval",
        help="measure the training recipe on every recording group: k group folds (needs the 'train' extra)",
        formatter_class=formatter,
        epilog="Fold k trains with fold k as test and fold k+1 as validation, then `scream evaluate` scores "
        "fold k; the out-of-fold results are pooled. Fold models already in --out with the same recipe are "
        "reused, so a stopped run resumes.\n\nexample:\n  scream crossval --data ../shared/data/scream-corpus-v1 "
        "--out runs/crossval --folds 5",
    )
    cv.add_argument("--data", required=True, help="manifest or folder, as for `scream train`")
    cv.add_argument("--out", required=True, help="folder for fold-K.tflite, fold-K-run/, fold-K-report/ and report.md")
    cv.add_argument("--folds", type=int, default=5, help="group folds (at least 3)")
    cv.add_argument("--scenes", type=_positive_int, default=1, help="scenes per fold in its evaluation")
    cv.add_argument(
        "--baseline",
        metavar="DIR",
        help="the --out of another crossval on the same data and folds (another recipe): each pooled "
        "metric's difference with a paired 95%% interval",
    )
    _add_recipe_arguments(cv)
    cv.set_defaults(func=cmd_crossval)

    corpus = sub.add_parser(
        "corpus",
        help="build the training corpus from a recipe (needs the 'train' extra)",
        formatter_class=formatter,
    )
    corpus_sub = corpus.add_subparsers(dest="corpus_command", required=True)
    corpus_build = corpus_sub.add_parser(
        "build",
        help="download, unpack, audit and write a corpus from a recipe",
        formatter_class=formatter,
        description="Build DATA from every source the recipe lists: data sets under --shared and Debian "
        "packages at exact versions (downloaded once into --cache), labels audited by the teacher, "
        "copies grouped, in scream-corpus-v1's manifest layout. A second run rewrites nothing that is "
        "up to date.",
        epilog="example:\n  scream corpus build --recipe train/corpus/recipe.toml --out ~/data/scream-corpus-v2\n\n"
        "exit status: 0 built, 1 built without some sources or files (each named), 2 fatal (recipe, teacher)",
    )
    corpus_build.add_argument("--recipe", required=True, help="the recipe TOML (train/corpus/recipe.toml)")
    corpus_build.add_argument("--out", required=True, help="the corpus folder to write (manifest.tsv, audio/, ...)")
    corpus_build.add_argument(
        "--shared", default="../shared", help="folder holding the recipe's data sets and teacher (default ../shared)"
    )
    corpus_build.add_argument(
        "--cache",
        help="downloads, unpacked packages, clips and teacher scores (default ~/.cache/scream-detector/corpus)",
    )
    corpus_build.add_argument(
        "--offline", action="store_true", help="download nothing: build from the cache and name what is missing"
    )
    corpus_build.add_argument("--json", action="store_true", help="a JSON summary on stdout after the tables")
    corpus_build.set_defaults(func=cmd_corpus_build)

    evaluate = sub.add_parser(
        "evaluate",
        help="metrics, false alarms per hour and a scene test (needs the 'train' extra)",
        formatter_class=formatter,
        epilog="example:\n  scream evaluate --model models/scream-v5.tflite --data ../shared/data/scream-corpus-v1 "
        "--splits models/scream-v5-run/splits.tsv --out reports/scream-v5",
    )
    evaluate.add_argument("--model", required=True)
    evaluate.add_argument("--data", required=True)
    evaluate.add_argument("--out", required=True, help="folder for report.md, report.json and plots")
    evaluate.add_argument("--splits", help="splits.tsv from training: evaluate only the --split rows")
    evaluate.add_argument("--split", default="test")
    evaluate.add_argument("--cache", help="folder for decoded audio")
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument(
        "--scenes", type=int, default=4, help="scenes to pool (each reorders the non-screams and redraws the SNRs)"
    )
    evaluate.add_argument(
        "--baseline",
        metavar="MODEL",
        help="a second model scored on the same clips: each metric's difference with a paired 95%% interval",
    )
    evaluate.set_defaults(func=cmd_evaluate)

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
        epilog="example:\n  scream check-model models/scream-v5.tflite\n\n"
        "exit status: 0 safe to use, 2 not (the reason is printed)",
    )
    check.add_argument("model")
    check.set_defaults(func=cmd_check_model)

    deploy = sub.add_parser(
        "deploy",
        help="push a model to Pis over SSH, roll back, or show their status",
        formatter_class=formatter,
        description="Over OpenSSH with keys and strict host key checking. Several hosts run in parallel; one "
        "bad host never stops the others; a summary table ends the run.",
        epilog="examples:\n  scream deploy push pi@hall.local pi@carpark.local --model models/scream-v5.tflite\n"
        "  scream deploy rollback pi@hall.local\n  scream deploy status pi@hall.local --json\n\n"
        "exit status: 0 every host succeeded, 1 some failed (see the table), 2 fatal",
    )
    deploy.add_argument("action", choices=("push", "rollback", "status"))
    deploy.add_argument("hosts", nargs="+", help="[user@]host as ssh takes it")
    deploy.add_argument("--model", help="with push: the .tflite (its .json sidecar goes along)")
    deploy.add_argument("--port", type=int)
    deploy.add_argument("--identity", help="private key file (default: ssh's own choice)")
    deploy.add_argument("--known-hosts", help="known_hosts file (default: ssh's own)")
    deploy.add_argument("--root", default="", help="prefix for every device path (for tests and staging)")
    deploy.add_argument("--remote-scream", default="/opt/scream-detector/venv/bin/scream")
    deploy.add_argument("--systemctl", default="sudo systemctl", help="how to call systemctl on the device")
    deploy.add_argument("--parallel", type=int, default=4, help="hosts at once")
    deploy.add_argument("--confirm-timeout", type=float, default=30.0, help="seconds to wait for the new sha256")
    deploy.add_argument("--json", action="store_true")
    deploy.set_defaults(func=cmd_deploy)

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
    explain.add_argument("--threshold", type=float, help="event start threshold in (0, 1)")
    explain.add_argument("--config", help="config whose [detector] settings and [[schedule]] windows to apply")
    explain.add_argument("--start", help="wall-clock time of the recording's start (ISO 8601), for schedules")
    explain.add_argument("--json", action="store_true")
    explain.set_defaults(func=cmd_explain)

    bench = sub.add_parser(
        "bench",
        help="measure log-mel, invoke, streaming speed and memory",
        formatter_class=formatter,
        epilog="examples:\n  scream bench\n  scream bench --quick --json\n\n"
        "librosa and TensorFlow are compared only when installed; the output says which were skipped.",
    )
    bench.add_argument("--model", help="model .tflite (default: the bundled one)")
    bench.add_argument("--quick", action="store_true", help="few repeats and 2 minutes of stream (for tests)")
    bench.add_argument("--json", action="store_true", help="print JSON instead of a table")
    bench.set_defaults(func=cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ScreamError as exc:
        _error(str(exc))
        return EXIT_FATAL
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
