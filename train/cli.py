"""`scream train`, `crossval`, `evaluate` and `corpus build`: the training side's subcommands.

Registered with the `scream` command through the `scream.commands` entry point group
(pyproject.toml), so edge/ never imports train/. TensorFlow and the other heavy modules are
imported inside each command, after a check that names the missing extra.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from edge.cli import EXIT_OK, EXIT_SOME_FAILED, positive_int, require_extra
from train.model import HEADS


def _train_config(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    """The TrainConfig that `scream train`'s and `scream crossval`'s recipe options describe."""
    from train.pipeline import TrainConfig

    given = (
        ("members", args.members),
        ("width", args.width),
        ("head", args.head),
        ("window_frames", args.window_frames),
        ("onset_window_fraction", args.onset_fraction),
    )
    # Unset: TrainConfig's default, so the parser need not import the training stack.
    chosen = {k: v for k, v in given if v is not None}
    return TrainConfig(
        **chosen,
        epochs=args.epochs,
        seed=args.seed,
        split_seed=args.split_seed,
        split_by=args.split_by,
        procedural_fraction=args.procedural_fraction,
        spoken_fraction=args.spoken_fraction,
        distill_weight=args.distill_weight,
        distill_target=args.distill_target,
        teacher_dir=args.teacher,
        min_teacher_scream=args.min_teacher_scream,
        teacher_hard_negative=args.teacher_hard_negatives,
        output_logit_max=args.output_logit_max,
        cache_dir=args.cache or "",
        verbose=2,
        max_false_alarms_per_hour=args.max_false_alarms_per_hour,
        min_event_recall=args.min_event_recall,
        max_latency_s=args.max_latency,
    )


def window_frames(text: str) -> int:
    """A window length in feature frames: 16 (0.16 s) to 300 (3 s)."""
    value = int(text)
    if not 16 <= value <= 300:
        raise argparse.ArgumentTypeError(f"must be from 16 to 300 frames, got {text}")
    return value


def fraction(text: str) -> float:
    """A share of excerpts: a number from 0 to 1."""
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be from 0 to 1, got {text}")
    return value


def _require_recipe_tools(args: argparse.Namespace) -> None:
    """The programs a recipe option needs, found before any data is read."""
    if args.spoken_fraction:
        from train.spoken import espeak_version

        espeak_version()


def _head_c_argument(parser: argparse.ArgumentParser) -> None:
    """--head-c: the head's inverse L2 strengths tried on validation (None: train/teacher_row.py HEAD_C,
    not imported here so that building the parser needs no train extra)."""
    parser.add_argument(
        "--head-c",
        nargs="+",
        type=float,
        metavar="C",
        help="the head's inverse L2 strengths tried, the best validation window PR AUC kept "
        "(default: train/teacher_row.py HEAD_C, 0.01 0.1 1)",
    )


def _head_c(args: argparse.Namespace) -> tuple[float, ...]:
    from train.teacher_row import HEAD_C

    return tuple(args.head_c) if args.head_c else HEAD_C


def _count(text: str) -> int:
    """A count that may be none: a whole number, 0 or more."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _mixes_argument(parser: argparse.ArgumentParser, flag: str, default: int, what: str) -> None:
    """--mixes / --head-mixes / --head-negative-mixes: how often the head's train windows are mixed."""
    parser.add_argument(
        flag,
        type=_count,
        default=default,
        metavar="N",
        help=f"{what} mixed N times into non-scream excerpts at 0-20 dB (default {default})",
    )


def _attempts_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--attempts",
        type=int,
        default=1,
        metavar="N",
        help="verdicts per candidate at most, as [verifier] attempts: a vetoed candidate is judged again each "
        "time the patience rule is met anew within it (1: judged once)",
    )


def _patience_argument(parser: argparse.ArgumentParser, help: str) -> None:
    parser.add_argument("--patience", nargs=2, type=int, metavar=("K", "N"), help=help)


def _patience(args: argparse.Namespace) -> tuple[int, int] | None:
    return (args.patience[0], args.patience[1]) if args.patience else None


def _require_train_extra(command: str, *modules: str) -> None:
    """Import the heavy modules a train/ command needs before it starts, so a missing one is a clear
    error naming the extra, not a traceback halfway through a run."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ start-up chatter out
    require_extra(command, "train", *modules)


def cmd_train(args: argparse.Namespace) -> int:
    _require_train_extra("scream train", "tensorflow", "scipy")
    _require_recipe_tools(args)
    from train.pipeline import train

    if args.out.endswith(".tflite"):
        args.out = args.out[: -len(".tflite")]
    train(args.data, args.out, config=_train_config(args))
    return EXIT_OK


def cmd_adapt(args: argparse.Namespace) -> int:
    _require_train_extra("scream adapt", "tensorflow", "scipy")
    from train.adapt import AdaptConfig, adapt

    out = args.out[: -len(".tflite")] if args.out.endswith(".tflite") else args.out
    config = AdaptConfig(
        epochs=args.epochs,
        steps_per_epoch=args.steps,
        learning_rate=args.learning_rate,
        site_share=args.site_share,
        replay_clips=args.replay,
        max_recall_drop=args.max_recall_drop,
        max_false_alarm_rise=args.max_false_alarm_rise,
        scenes=args.scenes,
        train=args.train,
        keep=args.keep,
        operating_point=args.operating_point,
        seed=args.seed,
        cache_dir=args.cache or "",
    )
    report = adapt(args.model, args.site, args.corpus, out, config=config)
    site, corpus = report["site"], report["corpus"]
    print(
        f"adapted {out}.tflite: site false alarms/h {site['before']['false_alarms_per_hour']} -> "
        f"{site['after']['false_alarms_per_hour']}; corpus scenes: recall {corpus['before']['event_recall']} -> "
        f"{corpus['after']['event_recall']} at {corpus['before']['false_alarms_per_hour']} -> "
        f"{corpus['after']['false_alarms_per_hour']} false alarms/h (report {out}-report/adapt.md)"
    )
    return EXIT_OK


def cmd_crossval(args: argparse.Namespace) -> int:
    _require_train_extra("scream crossval", "tensorflow", "scipy")
    _require_recipe_tools(args)
    from train.crossval import crossval

    crossval(
        args.data,
        args.out,
        folds=args.folds,
        config=_train_config(args),
        scenes=args.scenes,
        seed=args.seed,
        baseline=args.baseline,
        level_spread_db=args.level_spread,
        hop_ms=args.hop_ms,
        jobs=args.jobs,
    )
    return EXIT_OK


def cmd_crossval_pool(args: argparse.Namespace) -> int:
    from train.pool import pool
    from train.scenes import FALSE_ALARM_BUDGETS

    report = pool(args.runs, args.out, against=args.against or [])
    head = report["headline"]
    for budget in FALSE_ALARM_BUDGETS:
        key = f"recall_at_{budget:g}_fa_per_hour"
        if "model" in head:
            row, spread = head[key], report["seed_spread"][key]
            interval = row.get("interval_95")
            span = f" ({interval[0]:+.3f} to {interval[1]:+.3f})" if interval else ""
            print(
                f"recall at <= {budget:g} false alarms/h over seeds {report['seeds']}: {head['model'][key]} against "
                f"{head['baseline'][key]}, difference {row['difference']:+.4f}{span}, per seed "
                f"{spread['difference']}: {spread['verdict']}"
            )
        else:
            print(f"recall at <= {budget:g} false alarms/h over seeds {report['seeds']}: {head[key]}")
    print(f"report: {os.path.join(args.out, 'report.md')}")
    return EXIT_OK


def cmd_teacher_row(args: argparse.Namespace) -> int:
    _require_train_extra("scream teacher-row", "scipy")
    from train.distill import load_teacher
    from train.teacher_row import teacher_row

    teacher_row(
        args.crossval,
        args.data,
        args.out,
        load_teacher(args.teacher),
        cache_dir=args.cache or "",
        head_c=_head_c(args),
        patience=_patience(args),
        attempts=args.attempts,
        head_kind=args.head_kind,
        head_screams=args.head_screams,
        head_mixes=args.head_mixes,
        head_negative_mixes=args.head_negative_mixes,
        head_seed=args.head_seed,
        cascade_floor=args.cascade_floor,
    )
    return EXIT_OK


def cmd_float_row(args: argparse.Namespace) -> int:
    from train.float_row import float_row

    report = float_row(args.crossval, args.data, args.out, cache_dir=args.cache or "")
    paired = report["float_minus_int8"]
    for budget in (2, 5):
        key = f"recall_at_{budget}_fa_per_hour"
        print(
            f"recall at <= {budget} false alarms/h: int8 {paired['baseline'][key]}, float {paired['model'][key]}, "
            f"difference {paired[key]['difference']} {paired[key].get('interval_95')}"
        )
    print(f"report: {os.path.join(args.out, 'report.md')}")
    return EXIT_OK


def cmd_verifier_head(args: argparse.Namespace) -> int:
    _require_train_extra("scream verifier-head", "scipy")
    from edge.classifier import sha256_file
    from train.distill import load_teacher
    from train.verifier_head import fit_verifier_head

    teacher = load_teacher(args.teacher)
    written = fit_verifier_head(
        args.data,
        splits_file=args.splits,
        teacher=teacher,
        model_sha256=sha256_file(Path(args.teacher) / "yamnet.tflite"),
        out=args.out,
        cache_dir=args.cache or "",
        seed=args.seed,
        head_c=_head_c(args),
        mixes=args.mixes,
    )
    fit = written["fit"]
    print(
        f"head on {fit['train_windows']} windows ({fit['train_scream_windows']} scream) of {fit['train_clips']} train "
        f"clips, C={fit['c']:g} (validation window PR AUC {fit['validation_window_pr_auc_by_c']}), "
        f"{fit['seconds']:g} s: {args.out}"
    )
    return EXIT_OK


def cmd_verification(args: argparse.Namespace) -> int:
    _require_train_extra("scream verification", "scipy")
    from edge.verifier import EventVerifier
    from train.verification import verification_report

    verifier = EventVerifier(
        args.verifier,
        classes=args.classes,
        threshold=0.5,
        attempts=args.attempts,
        class_map=args.class_map,
        head=args.head,
    )
    report = verification_report(
        args.model,
        args.data,
        splits_file=args.splits,
        verifier=verifier,
        out_dir=args.out,
        cache_dir=args.cache or "",
        seed=args.seed,
        scenes=args.scenes,
        budget=args.budget,
        patience=_patience(args),
    )
    if args.record:
        from train.verification import chosen_pair, record_pair

        pair = chosen_pair(report, f"{args.out}/report.md")
        written = record_pair(args.model, pair, report["model_sha256"])
        print(
            f"recorded in {written}: on {pair.on_threshold:g}, verifier threshold {pair.threshold:g}, "
            f"{pair.attempts} verdict(s) a candidate, for {pair.verdict} on verifier {pair.verifier_sha256[:12]}"
        )
    points = report["points"]
    print(
        f"chosen on validation at <= {args.budget:g} false alarms/h: student alone on {points['student']['on']:g}, "
        f"with the verifier on {points['verified']['on']:g} and verifier threshold "
        f"{points['verified']['verifier_threshold']:g}; on the test split: scene recall "
        f"{points['student']['test']['scene_event_recall']:g} -> {points['verified']['test']['scene_event_recall']:g}, "
        f"scene false alarms/h {points['student']['test']['scene_false_alarms_per_hour']:g} -> "
        f"{points['verified']['test']['scene_false_alarms_per_hour']:g}, stream false alarms/h "
        f"{points['student']['test']['stream_false_alarms_per_hour']:g} -> "
        f"{points['verified']['test']['stream_false_alarms_per_hour']:g}; {args.out}/report.md"
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
        level_spread_db=args.level_spread,
        hop_ms=args.hop_ms,
    )
    return EXIT_OK


def _add_recipe_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--epochs", type=int, default=30, help="at most this many (early stopping on validation PR AUC)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--split-seed",
        type=int,
        help="the seed that deals the splits (and crossval's folds); default --seed. Keep it to train a recipe "
        "again at another --seed on the same folds (crossval's scenes follow --seed, and a --baseline is "
        "scored on them too, so the pairing holds)",
    )
    parser.add_argument(
        "--split-by",
        "--by",
        dest="split_by",
        choices=("group", "source"),
        default="group",
        help="what splits (and crossval's folds) deal whole: recording groups, or sources (the manifest's "
        "source column; folds then balance screams: leave-source-out)",
    )
    parser.add_argument(
        "--members",
        type=positive_int,
        help="networks to train (seeds seed, seed+1, ...) and ship averaged as one model",
    )
    parser.add_argument(
        "--width", type=positive_int, help="channels of the first convolution; later blocks use 2x and 4x"
    )
    parser.add_argument(
        "--head",
        choices=HEADS,
        help="how the last feature map is pooled before the scream unit: 'global' (the mean over time and "
        "frequency, the default), 'frequency' (the mean over time, mel regions kept apart) or 'mean-max' "
        "(the mean over frequency, then the mean plus the maximum over time, so a sound filling part of the "
        "window is not diluted; train/model.py)",
    )
    parser.add_argument(
        "--window-frames",
        type=window_frames,
        help="feature frames per classified window (default 96, 0.96 s at the 10 ms hop): a shorter window "
        "hears a scream's start sooner; distillation needs 96, the teacher's window",
    )
    parser.add_argument(
        "--procedural-fraction",
        type=fraction,
        default=0.0,
        help="share of negative excerpts drawn from procedural vocal non-screams, alarms and ringtones "
        "(train/procedural.py; default 0, off)",
    )
    parser.add_argument(
        "--spoken-fraction",
        type=fraction,
        default=0.0,
        help="share of negative excerpts drawn from vowels, hums, laughs, sighs and words said by espeak-ng "
        "(train/spoken.py; needs the espeak-ng package; default 0, off)",
    )
    parser.add_argument(
        "--onset-fraction",
        type=fraction,
        help="share of scream excerpts that end 0.25-0.6 s after the scream's onset, as the live detector "
        "hears a scream that has just begun (train/windows.py; default 0.3)",
    )
    parser.add_argument(
        "--distill-weight",
        type=float,
        default=0.0,
        help="> 0: also learn the teacher's view (--distill-target) of every augmented excerpt, with this loss "
        "weight (an auxiliary head dropped at export; train/distill.py; default 0, off)",
    )
    parser.add_argument(
        "--distill-target",
        choices=("embedding", "scores"),
        default="embedding",
        help="what --distill-weight learns: the teacher's 1024-d embedding (cosine loss, the default) or its "
        "521 AudioSet class scores (binary cross-entropy to them)",
    )
    parser.add_argument(
        "--min-teacher-scream",
        type=float,
        default=0.0,
        help="> 0: leave out of train and validation the screams whose teacher audit (manifest column "
        "teacher_scream) is below this; the test split keeps every clip (default 0, off)",
    )
    parser.add_argument(
        "--teacher-hard-negatives",
        type=float,
        default=0.0,
        help="> 0: mine as hard negatives the non-screams whose teacher audit (manifest column teacher_scream) "
        "reaches this: drawn at twice the hard-negative weight (default 0, off)",
    )
    parser.add_argument(
        "--output-logit-max",
        type=float,
        default=0.0,
        help="> 0: at export divide the scream logit so the largest on representative windows is this (e.g. 3), "
        "so int8's output steps (1/256, top 0.996) resolve the highest scores instead of tying them (default 0, off)",
    )
    parser.add_argument(
        "--teacher", default="../shared/models/yamnet", help="the teacher for --distill-weight (YAMNet TF-Lite folder)"
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


def register(sub: Any, formatter: type[argparse.HelpFormatter]) -> None:
    """Add the training subcommands to `scream`'s subparsers."""
    train = sub.add_parser(
        "train",
        help="train and export an int8 model (needs the 'train' extra)",
        formatter_class=formatter,
        epilog="example:\n  scream train --data /data/scream-corpus-v2 --out models/scream-v6 "
        "--min-teacher-scream 0.05",
    )
    train.add_argument(
        "--data", required=True, help="manifest (TSV/CSV: path, label[, group]) or folder with scream/ and non_scream/"
    )
    train.add_argument(
        "--out", required=True, help="output path without suffix: writes NAME.tflite, NAME.json, NAME-run/"
    )
    _add_recipe_arguments(train)
    train.set_defaults(func=cmd_train)

    ad = sub.add_parser(
        "adapt",
        help="fine-tune a model on one site's labelled clips, keeping its scream recall (needs the 'train' extra)",
        formatter_class=formatter,
        description="The site's clips (from 'scream deploy pull') are split into a part to learn from, one for "
        "the operating point and one for the before/after report. The model is fine-tuned on them with a replay "
        "sample of its own training corpus, exported int8, and published only if its scene recall on the "
        "corpus test clips stays within --max-recall-drop of the base model's.",
        epilog="example:\n  scream deploy pull pi@hall.local --out site-data/hall\n"
        "  scream adapt --model models/scream-v6.tflite --site site-data/hall --corpus /data/scream-corpus-v2 "
        "--out models/scream-v6-hall\n  scream deploy push pi@hall.local --model models/scream-v6-hall.tflite",
    )
    ad.add_argument("--model", required=True, help="the base .tflite (its NAME-run/ folder must be beside it)")
    ad.add_argument("--site", required=True, help="the pulled site folder (manifest.tsv) or its manifest")
    ad.add_argument(
        "--corpus", required=True, help="the corpus the base model was trained on (for replay and the check)"
    )
    ad.add_argument("--out", required=True, help="output path without suffix: NAME.tflite, NAME.json, NAME-report/")
    ad.add_argument("--epochs", type=positive_int, default=10)
    ad.add_argument("--steps", type=positive_int, default=40, help="batches per epoch")
    ad.add_argument("--learning-rate", type=float, default=1e-3)
    ad.add_argument("--site-share", type=float, default=0.4, help="share of negative excerpts from the site's clips")
    ad.add_argument("--replay", type=positive_int, default=1200, help="corpus training clips replayed")
    ad.add_argument(
        "--max-recall-drop", type=float, default=0.05, help="corpus scene recall the adapted model may lose (absolute)"
    )
    ad.add_argument(
        "--max-false-alarm-rise",
        type=float,
        default=0.25,
        help="corpus scene false alarms/h the adapted model may add, relative to the base model's (plus one alarm)",
    )
    ad.add_argument("--scenes", type=positive_int, default=4, help="corpus test scenes per model")
    ad.add_argument(
        "--train",
        choices=("head", "all"),
        default="head",
        help="what learns: only the dense head, on the base model's convolutional features (head), or every layer",
    )
    ad.add_argument(
        "--keep",
        choices=("labels", "base"),
        default="labels",
        help="replay clips learnt from their labels, or from the base model's own scores (learning without forgetting)",
    )
    ad.add_argument(
        "--operating-point",
        choices=("held", "rechoose", "matched"),  # train.adapt.OPERATING_POINTS, not imported here
        default="held",
        help="the base model's patience with the on that finds most at no more false alarms than the base model in "
        "the same corpus validation scenes (held); chosen again on validation scenes as training chooses "
        "(rechoose); or the base model's patience with on/off at its window false-positive rates on the corpus "
        "validation non-screams (matched)",
    )
    ad.add_argument("--seed", type=int, default=0)
    ad.add_argument("--cache", help="folder for decoded audio (default ~/.cache/scream-detector/waves)")
    ad.set_defaults(func=cmd_adapt)

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
    cv.add_argument("--scenes", type=positive_int, default=1, help="scenes per fold in its evaluation")
    cv.add_argument(
        "--level-spread",
        type=float,
        metavar="DB",
        help="each scene non-scream at a random gain within +-DB (default 10 with --by source, else 0)",
    )
    cv.add_argument(
        "--hop-ms",
        type=int,
        default=0,
        help="decide every fold's streams and scenes as `listen` does with `[detector] hop_ms` set to this "
        "(as scream evaluate --hop-ms; fold models already in --out are reused)",
    )
    cv.add_argument(
        "--baseline",
        metavar="DIR",
        help="the --out of another crossval on the same data and folds (another recipe): each pooled "
        "metric's difference with a paired 95%% interval",
    )
    cv.add_argument(
        "--jobs",
        type=positive_int,
        default=1,
        help="train the fold models still to train this many at once, each in its own process with its share "
        "of the cores, then evaluate them in order (default 1: one after another)",
    )
    _add_recipe_arguments(cv)
    cv.set_defaults(func=cmd_crossval)

    cp = sub.add_parser(
        "crossval-pool",
        help="pool one recipe's crossval runs at several training seeds, each against its own baseline run",
        formatter_class=formatter,
        epilog="A training seed alone moves the scene headline as much as a recipe change, so screen a change "
        "at two or more seeds: `scream crossval --seed S --split-seed 0 --baseline BASELINE_AT_S` for each S, "
        "then pool the runs. The runs must share data, folds and scenes' making, one recipe and one baseline "
        "recipe, at distinct seeds; their fold scene curves pool into one paired headline (scream sources "
        "resampled across all seeds at once) with each seed's row and the seed spread. Nothing is trained or "
        "scored again (train/pool.py).\n\nexample:\n  scream crossval-pool runs/w64-s0 runs/w64-s1 \\\n"
        "      --against runs/base-s1 --out runs/w64-pooled",
    )
    cp.add_argument("runs", nargs="+", metavar="RUN", help="the --out of each `scream crossval` (two or more)")
    cp.add_argument(
        "--against",
        nargs="+",
        metavar="BASELINE_RUN",
        help="crossval runs of the baseline recipe; each pairs with the RUN of its training seed (the same scenes), "
        "in place of that RUN's own --baseline",
    )
    cp.add_argument("--out", required=True, help="folder for report.md and report.json")
    cp.set_defaults(func=cmd_crossval_pool)

    tr = sub.add_parser(
        "teacher-row",
        help="measure the teacher (YAMNet) on a crossval's folds and scenes, paired with its recipe",
        formatter_class=formatter,
        epilog="Rebuilds each fold's test scenes as the crossval did and scores them with YAMNet's 'Screaming' "
        "class and with a logistic head on its embedding (fitted on the fold's train split), through the "
        "fold model's live decisions (train/teacher_row.py).\n\nexample:\n  scream teacher-row --crossval "
        "models/scream-v5-crossval/by-source-screen-e15 --data DATA \\\n"
        "      --teacher ../shared/models/yamnet --out runs/teacher",
    )
    tr.add_argument("--crossval", required=True, metavar="DIR", help="the --out of a `scream crossval`")
    tr.add_argument("--data", required=True, help="the data set that crossval ran on")
    tr.add_argument("--teacher", required=True, metavar="DIR", help="YAMNet TF-Lite folder (../shared/models/yamnet)")
    tr.add_argument("--out", required=True, help="folder for report.md and report.json")
    tr.add_argument(
        "--cache",
        help="folder for decoded audio and, in its teacher-windows/, the teacher's scored windows "
        "(default ~/.cache/scream-detector/waves)",
    )
    _head_c_argument(tr)
    tr.add_argument(
        "--head-kind",
        choices=("logistic", "mlp"),
        default="logistic",
        help="the head on the teacher's embedding: logistic regression, or one hidden layer of 32 rectified units",
    )
    tr.add_argument(
        "--head-screams",
        choices=("audited", "all"),
        default="audited",
        help="fit the head on the fold's train screams as its splits file names them (audited), or with the "
        "screams the crossval's --min-teacher-scream left out put back (all)",
    )
    _mixes_argument(tr, "--head-mixes", 1, "each train scream's loud windows")
    _mixes_argument(tr, "--head-negative-mixes", 0, "each train non-scream's loudest window")
    tr.add_argument(
        "--head-seed",
        type=int,
        metavar="N",
        help="draw the head's mixtures from this seed (default: the crossval's seed)",
    )
    tr.add_argument(
        "--cascade-floor",
        type=float,
        default=0.8,
        metavar="Q",
        help="the lowest quantile of the recipe's scene window scores the cascades try as `on` (default 0.8; "
        "lower adds five quantiles from Q up to 0.8)",
    )
    _patience_argument(tr, "decide every row with K of N windows at or above `on`, not each fold model's own patience")
    _attempts_argument(tr)
    tr.set_defaults(func=cmd_teacher_row)

    fr = sub.add_parser(
        "float-row",
        help="what the int8 export costs on a crossval's fold scenes: each fold's float twin against its int8 model",
        formatter_class=formatter,
        epilog="Rebuilds each fold's test scenes as the crossval did and scores them with the fold's int8 model and "
        "with its float32 twin (fold-K-run/model-float.tflite), through the fold model's live decisions, paired "
        "scream by scream (train/float_row.py).\n\nexample:\n  scream float-row --crossval runs/crossval "
        "--data DATA --out runs/float-row",
    )
    fr.add_argument("--crossval", required=True, metavar="DIR", help="the --out of a `scream crossval`")
    fr.add_argument("--data", required=True, help="the data set that crossval ran on")
    fr.add_argument("--out", required=True, help="folder for report.md and report.json")
    fr.add_argument("--cache", help="folder for decoded audio (default ~/.cache/scream-detector/waves)")
    fr.set_defaults(func=cmd_float_row)

    vh = sub.add_parser(
        "verifier-head",
        help="fit a head on YAMNet's embedding for the second stage ([verifier] head)",
        formatter_class=formatter,
        epilog="Fits a logistic regression on YAMNet's 1024-d embedding of the train split's windows (its "
        "non-screams; its screams' loud windows, clean and mixed into non-screams at 0-20 dB), chooses its "
        "strength by window PR AUC on the validation split, and writes a head file for [verifier] head "
        "(train/verifier_head.py). Choose the pair of `on` and head threshold with scream verification --head.\n\n"
        "example:\n  scream verifier-head --data DATA --splits models/scream-v6-run/splits.tsv \\\n"
        "      --teacher ../shared/models/yamnet --out models/scream-v6-yamnet-head.json",
    )
    vh.add_argument("--data", required=True)
    vh.add_argument("--splits", required=True, help="the model's splits.tsv (train fits, validation chooses)")
    vh.add_argument("--teacher", required=True, metavar="DIR", help="YAMNet's folder (yamnet.tflite, class map)")
    vh.add_argument("--out", required=True, metavar="JSON", help="the head file to write")
    vh.add_argument("--cache", help="folder for decoded audio (default ~/.cache/scream-detector/waves)")
    vh.add_argument("--seed", type=int, default=0)
    _mixes_argument(vh, "--mixes", 1, "each train scream's loud windows")
    _head_c_argument(vh)
    vh.set_defaults(func=cmd_verifier_head)

    ve = sub.add_parser(
        "verification",
        help="measure a second stage ([verifier]) behind a model and choose its threshold on validation",
        formatter_class=formatter,
        epilog="Builds the model's validation and test streams and scenes as `scream evaluate` does, decides them "
        "at the model's operating point, judges every candidate event with the verifier as `listen` would, and "
        "chooses on validation the student's `on` alone, and the pair of `on` and verifier threshold, with the "
        "most scene recall within --budget false alarms per hour, then replays both on the test split "
        "(train/verification.py).\n\nexample:\n  scream verification --model models/scream-v5.tflite "
        "--data ../shared/data/scream-corpus-v1 \\\n      --splits models/scream-v5-run/splits.tsv "
        "--verifier ../shared/models/yamnet/yamnet.tflite --out models/scream-v5-verifier",
    )
    ve.add_argument("--model", required=True)
    ve.add_argument("--data", required=True)
    ve.add_argument("--splits", required=True, help="the model's splits.tsv (validation chooses, test reports)")
    ve.add_argument("--verifier", required=True, metavar="TFLITE", help="the verifier model (YAMNet: yamnet.tflite)")
    ve.add_argument("--class-map", help="its class map CSV (default: <model stem>_class_map.csv beside it)")
    ve.add_argument(
        "--classes", nargs="+", default=["Screaming"], metavar="NAME", help="the verification score is their best"
    )
    ve.add_argument("--head", metavar="JSON", help="score by this head on its embedding, not by classes")
    ve.add_argument(
        "--budget", type=float, default=5.0, help="false alarms per hour on validation scenes the choice may cost"
    )
    ve.add_argument("--out", required=True, help="folder for report.md and report.json")
    ve.add_argument("--cache", help="folder for decoded audio (default ~/.cache/scream-detector/waves)")
    ve.add_argument("--seed", type=int, default=0)
    ve.add_argument("--scenes", type=int, default=4, help="scenes per split, as scream evaluate")
    _patience_argument(
        ve,
        "decide with K of N windows at or above `on` (as [detector] patience_windows/patience_of), not "
        "the model's own patience; the recommended settings then include it",
    )
    _attempts_argument(ve)
    ve.add_argument(
        "--record",
        action="store_true",
        help="keep the chosen pair in the model's sidecar (`verification`), in place of one for the same "
        "verifier and verdict: a site whose [verifier] leaves threshold at 0 then runs it, wherever the "
        "model is deployed",
    )
    ve.set_defaults(func=cmd_verification)

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
    evaluate.add_argument(
        "--level-spread",
        type=float,
        default=0.0,
        metavar="DB",
        help="each stream and scene non-scream at a random gain within +-DB (crossval --by source uses 10)",
    )
    evaluate.add_argument(
        "--hop-ms",
        type=int,
        default=0,
        help="decide the stream and scenes as `listen` does with `[detector] hop_ms` set to this "
        "(a multiple of 10 in 10-1000; 0, the default: the model's own hop)",
    )
    evaluate.set_defaults(func=cmd_evaluate)
