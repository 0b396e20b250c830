"""Rendering of evaluations: `scream evaluate`'s report.md and plots, the model card, and
`scream crossval`'s report.md. Reads report dictionaries (and sidecars); computes nothing new."""

from __future__ import annotations

import collections
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from edge.features import FeatureParams
from train import metrics

if TYPE_CHECKING:
    from train.evaluate import ClipScores

# How the reports name them, in the order of their tables.
RANKING_LABELS = {
    "roc_auc": "ROC AUC",
    "pr_auc": "PR AUC",
    "recall_at_1pct_fpr": "recall at 1% FPR",
    "recall_at_5pct_fpr": "recall at 5% FPR",
}


def plots(
    out: Path,
    labels: npt.NDArray[np.bool_],
    scores: npt.NDArray[np.float64],
    scored: list[ClipScores],
    threshold: float,
    model: Path,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fpr, tpr, _ = metrics.roc_curve(labels, scores)
    precision, recall = metrics.pr_curve(labels, scores)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    axes[0].plot(fpr, tpr)
    axes[0].set(
        xscale="log",
        xlim=(1e-3, 1),
        xlabel="false-positive rate (windows)",
        ylabel="recall",
        title=f"ROC (AUC {metrics.roc_auc(labels, scores):.3f})",
    )
    axes[1].plot(recall, precision)
    axes[1].set(xlabel="recall", ylabel="precision", title=f"PR (AP {metrics.average_precision(labels, scores):.3f})")
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "roc_pr.png", dpi=110)
    plt.close(fig)

    families: dict[str, list[float]] = collections.defaultdict(list)
    for s in scored:
        families[s.clip.family].append(s.peak)
    fig, ax = plt.subplots(figsize=(10, 4.2))
    bins = np.linspace(0, 1, 41)
    for name, peaks in sorted(families.items()):
        ax.hist(peaks, bins=bins, histtype="step", linewidth=1.5, density=True, label=f"{name} ({len(peaks)})")
    ax.axvline(threshold, color="k", linestyle="--", label=f"on threshold {threshold:.2f}")
    ax.set(xlabel="clip peak score", ylabel="density", title="Peak scores per category (test clips)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "score_histograms.png", dpi=110)
    plt.close(fig)

    history_file = model.parent / f"{model.stem}-run" / "history.json"
    if history_file.exists():
        history = json.loads(history_file.read_text())
        members = history.get("members", [history])  # an ensemble's run keeps one history per member
        fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
        for k, member in enumerate(members):
            tag = f" (member {k + 1})" if len(members) > 1 else ""
            for key in ("loss", "val_loss"):
                axes[0].plot(member.get(key, []), label=key + tag)
            for key in ("pr_auc", "val_pr_auc", "val_roc_auc"):
                axes[1].plot(member.get(key, []), label=key + tag)
        axes[0].set(xlabel="epoch", title="loss")
        axes[1].set(xlabel="epoch", title="AUC")
        for ax in axes:
            ax.legend(fontsize=8 if len(members) > 1 else None)
            ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(out / "training_curves.png", dpi=110)
        plt.close(fig)


def gate_text(report: dict[str, Any]) -> str:
    """How the report's streams and scenes were decided: as `listen` decides, gate included."""
    d = report["model"].get("decisions")
    if not d:  # a report written before the gate was applied outside `listen`
        return "the shipped thresholds and patience, without the loudness gate"
    floor = f", noise floor + {d['noise_floor_margin_db']:g} dB" if d.get("noise_floor_margin_db") else ""
    config = "the default config"
    if d.get("hop_ms") and d["hop_ms"] != d.get("model_hop_ms"):
        config = f"`[detector] hop_ms = {d['hop_ms']}` (the model's own hop: {d['model_hop_ms']} ms)"
    return (
        f"those `scream listen` runs with {config}: {d['describe']}, loudness gate "
        f"{d['loudness_gate_dbfs']:g} dBFS{floor} (windows quieter than it start no event)"
    )


def start_rule(t: dict[str, Any]) -> str:
    """How an event starts, from a sidecar's thresholds block."""
    m = int(t.get("smoothing_windows", 1))
    rule = f"{t.get('patience_windows', 1)} of the last {t.get('patience_of', 1)} windows reach `on`"
    return rule + (f", each window scored as the mean of the last {m} window scores" if m > 1 else "")


def variants_table(variants: list[dict[str, Any]]) -> list[str]:
    """Markdown rows for the decision variants (the shipped one in bold)."""
    lines = [
        "| `[detector]` decisions at the shipped `on` | stream false alarms/h | scene event recall "
        "| scene false alarms/h | median onset to alarm (s) |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for row in variants:
        name = f"**{row['decisions']}** (shipped)" if row["shipped"] else row["decisions"]
        lines.append(
            f"| {name} | {row['stream_false_alarms_per_hour']} | {row['scene_event_recall']} "
            f"| {row['scene_false_alarms_per_hour']} | {row['median_onset_to_alarm_s']} |"
        )
    return lines


def interval_of(block: dict[str, Any], key: str) -> list[float] | None:
    """The 95% interval of `block[key]`, if the report has one (`interval_95` or `<key>_interval_95`)."""
    found = block.get(f"{key}_interval_95") or block.get("interval_95", {}).get(key)
    return list(found) if found else None


def _cell(block: dict[str, Any], key: str) -> str:
    """A metric with its 95% interval when the report has one: '0.9653 (0.941-0.983)'."""
    interval = interval_of(block, key)
    return f"{block[key]} ({interval[0]:.3f}-{interval[1]:.3f})" if interval else str(block[key])


def _rate_interval(stream: dict[str, Any]) -> str:
    interval = interval_of(stream, "false_alarms_per_hour")
    return f" (95% interval {interval[0]:.1f}-{interval[1]:.1f})" if interval else ""


def paired_table(comparison: dict[str, Any], this: str) -> list[str]:
    """Markdown table of `paired_rows` blocks ("windows", "clips"): each metric for both sides and
    the difference with its interval."""
    lines = [f"| metric | {this} | baseline | difference (95% interval) |", "| --- | ---: | ---: | ---: |"]
    for block in ("windows", "clips"):
        if comparison[block] is None:  # another window or hop: windows are not the same items
            continue
        for key, label in RANKING_LABELS.items():
            row = comparison[block][key]
            low, high = row["interval_95"]
            lines.append(
                f"| {block[:-1]} {label} | {row['model']} | {row['baseline']} | "
                f"{row['difference']:+.4f} ({low:+.3f} to {high:+.3f}) |"
            )
    if comparison["windows"] is None:
        lines += [
            "",
            f"No window rows: the baseline cuts the clips into other windows ({comparison.get('window_cut')}), "
            "so windows are not the same items; clips, the stream and the scenes are.",
        ]
    return lines


def baseline_section(report: dict[str, Any]) -> list[str]:
    """Markdown lines comparing the model with `--baseline`, if the report has one."""
    base = report.get("baseline")
    if not base:
        return []
    lines = [
        "",
        f"## Against the baseline `{Path(base['path']).name}` (sha256 `{base['sha256'][:12]}…`)",
        "Both models scored the same clips. Each difference (this model minus the baseline) has a 95% interval "
        "from resampling recording groups with both models meeting the same resamples; an interval that "
        "holds 0 is no evidence either way.",
        "",
        *paired_table(base, "this model"),
        "",
        *_paired_headline_lines(base.get("headline")),
        *_paired_headline_lines(base.get("headline_audited"), _audited_caption(base.get("headline_audited"))),
        "",
        f"Continuous non-scream stream, each model with its own shipped decisions: "
        f"{report['stream']['false_alarms']} false alarms against the baseline's {base['stream_false_alarms']}.",
    ]
    return lines


def render_markdown(report: dict[str, Any], *, has_plots: bool) -> str:
    w, c, st, sc = report["windows"], report["clips"], report["stream"], report["scene"]
    t = report["model"]["thresholds"]
    lines = [
        f"# Evaluation of `{Path(report['model']['path']).name}`",
        "",
        f"- sha256 `{report['model']['sha256'][:16]}…`, {report['model']['size_bytes']} bytes, "
        f"runtime `{report['model']['runtime']}`, thresholds on {t['on']} / off {t['off']}, an event starts "
        f"when {start_rule(t)}",
        f"- decisions: {gate_text(report)}",
        f"- data: `{report['data']['root']}`, split **{report['data']['split']}**: {report['data']['clips']} clips "
        f"({report['data']['screams']} screams, {report['data']['non_screams']} non-screams)",
        "",
        "Metrics with a 95% interval from resampling whole recording groups (1000 resamples):",
        "",
        "| metric | windows | clips |",
        "| --- | ---: | ---: |",
    ]
    for key, label in (
        ("count", "count"),
        *RANKING_LABELS.items(),
        ("f1_at_threshold", "F1 at the on threshold"),
    ):
        lines.append(f"| {label} | {_cell(w, key)} | {_cell(c, key)} |")
    cw, cc = w["confusion_at_threshold"], c["confusion_at_threshold"]
    lines += [
        "",
        "Confusion at the on threshold (TP / FP / TN / FN): "
        f"windows {cw['true_positive']} / {cw['false_positive']} / {cw['true_negative']} / {cw['false_negative']}; "
        f"clips {cc['true_positive']} / {cc['false_positive']} / {cc['true_negative']} / {cc['false_negative']}.",
        "",
        "## Continuous non-scream stream (live decisions)",
        f"All non-scream clips of the split replayed as one {st['hours'] * 60:.1f}-minute stream: "
        f"**{st['false_alarms']} false alarms, {st['false_alarms_per_hour']} per hour**{_rate_interval(st)}."
        + (
            f" {st['at_clip_boundary']} of them started in a window holding the end of one clip and the start of "
            f"the next ({st['boundary_window_share']:.0%} of the stream's windows do): "
            + ", ".join(
                f"`{Path(f['clip']).name}` ({f['category']}{', boundary' if f['at_clip_boundary'] else ''})"
                for f in st["fired_in"]
            )
            + "."
            if st.get("fired_in")
            else ""
        ),
        "",
        "## Scene: screams inserted at known times, 0-20 dB over the local background",
        f"{sc.get('scenes', 1)} scene(s), each the split's non-screams in its own order with every scream of the "
        "split inserted at its own SNR, pooled:",
        "",
        f"- event recall **{sc['event_recall']}** ({sc['detected']} of {sc['screams']})",
        f"- false alarms {sc['false_alarms']} in {sc['hours'] * 60:.1f} minutes "
        f"({sc['false_alarms_per_hour']} per hour)",
        f"- median scream onset to alarm: {sc['median_onset_to_alarm_s']} s",
        "",
    ]
    if report.get("scene_headline"):
        lines += [*headline_lines(report["scene_headline"], what="this split"), ""]
        lines += audited_headline_lines(report.get("scene_headline_audited"))
    if variants := report.get("decision_variants"):
        lines += [
            "Other decisions a site can set in `[detector]` (`patience_windows`/`patience_of`, `smoothing_windows`), "
            "replaying the same scored stream and scenes:",
            "",
            *variants_table(variants),
            "",
        ]
    lines += [
        "## Negatives that cause false alarms (clip peak at or above `on`)",
        "| family | clips | false-alarm clips | rate |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, row in report["negatives"]["family"].items():
        lines.append(f"| {name} | {row['clips']} | {row['false_alarm_clips']} | {row['false_alarm_rate']} |")
    worst = sorted(report["negatives"]["category"].items(), key=lambda kv: -kv[1]["false_alarm_clips"])[:8]
    lines += [
        "",
        "Worst fine categories: "
        + ", ".join(f"{k} {v['false_alarm_clips']}/{v['clips']}" for k, v in worst if v["false_alarm_clips"])
        or "none",
    ]
    lines += [
        "",
        "## By source (clip peak at or above `on`)",
        "| source | screams found | non-screams firing |",
        "| --- | ---: | ---: |",
    ]
    for name, row in report.get("sources", {}).items():
        lines.append(
            f"| {name} | {row['screams_found']}/{row['screams']} | {row['false_alarm_clips']}/{row['non_screams']} |"
        )
    if conditions := report.get("conditions"):
        lines += [
            "",
            "## Recording conditions (every clip of the split transformed, windows and clips at `on`)",
            "| condition | window ROC AUC | recall at 1% FPR | scream windows at `on` | non-scream windows at `on` "
            "| screams found | non-screams firing |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for name, row in conditions.items():
            lines.append(
                f"| {name} | {row['roc_auc']} | {row['recall_at_1pct_fpr']} | {row['scream_windows_at_on']} "
                f"| {row['non_scream_windows_at_on']} | {row['screams_found']}/{row['screams']} "
                f"| {row['non_screams_firing']}/{row['non_screams']} |"
            )
    lines += baseline_section(report)
    lines += ["", f"## Missed screams ({len(report['missed_screams'])})"]
    lines += [f"- `{Path(m['path']).name}` ({m['category']}), peak {m['peak']}" for m in report["missed_screams"][:20]]
    if has_plots:
        lines += [
            "",
            "## Plots",
            "",
            "![ROC and PR](roc_pr.png)",
            "",
            "![Score histograms](score_histograms.png)",
            "",
            "![Training curves](training_curves.png)",
        ]
    return "\n".join(lines) + "\n"


TARGETS = (
    ("test windows: ROC AUC", "windows", "roc_auc", ">=", 0.97),
    ("test windows: recall at 1% false-positive rate", "windows", "recall_at_1pct_fpr", ">=", 0.90),
    ("false alarms per hour, continuous non-scream stream", "stream", "false_alarms_per_hour", "<=", 0.5),
)


_POOLING_TEXT = {
    "global": "global average pooling",
    "frequency": "average pooling over time, a dense layer over the mel regions",
    "mean-max": "average pooling over frequency, then the mean plus the maximum over time",
}


def _network_text(config: dict[str, Any], temperature: float = 1.0) -> str:
    unit = "one sigmoid unit" + (
        f" (its logit divided by {temperature:g} at export, so int8 resolves the top scores)" if temperature > 1 else ""
    )
    one = (
        f"one 3x3 convolution and four depthwise-separable blocks (width {config.get('width')}), "
        + _POOLING_TEXT.get(str(config.get("head", "global")), "global average pooling")
        + f", {unit}"
    )
    members = int(config.get("members", 1))
    if members > 1:
        return (
            f"the mean of {members} CNNs trained alike from seeds {config.get('seed')}-"
            f"{int(config.get('seed', 0)) + members - 1} (one int8 model), each of {one}"
        )
    return f"a CNN of {one}"


def _epochs_text(epochs: Any) -> str:
    if isinstance(epochs, list):
        return f"{'/'.join(map(str, epochs))} epochs (per member)"
    return f"{epochs} epochs"


def _speed_text(training: dict[str, Any]) -> str:
    augment = training.get("augment", {})
    if not augment.get("speed_probability"):
        return ""
    low, high = augment.get("speed_range", (0.85, 1.18))
    return f", speed and pitch {low}-{high}x on {augment['speed_probability']:.0%} of excerpts"


def _recipe_text(config: dict[str, Any]) -> str:
    """How `scream train` was called, as far as the recipe options that change training go."""
    options = []
    if config.get("min_teacher_scream"):
        options.append(
            f"`--min-teacher-scream {config['min_teacher_scream']:g}` (train and validation leave out the screams "
            "whose teacher audit is below it; the split counts above are after that)"
        )
    for key, flag in (
        ("teacher_hard_negative", "--teacher-hard-negatives"),
        ("procedural_fraction", "--procedural-fraction"),
        ("spoken_fraction", "--spoken-fraction"),
        ("distill_weight", "--distill-weight"),
        ("output_logit_max", "--output-logit-max"),
    ):
        if config.get(key):
            options.append(f"`{flag} {config[key]:g}`")
    onset = config.get("onset_window_fraction", 0.3)
    if onset != 0.3:
        options.append(f"`--onset-fraction {onset:g}`")
    if config.get("distill_weight") and config.get("distill_target", "embedding") != "embedding":
        options.append(f"`--distill-target {config['distill_target']}`")
    return "with its defaults" if not options else "with its defaults and " + ", ".join(options)


def model_card(report: dict[str, Any], sidecar: dict[str, Any], *, report_dir: Path) -> str:
    """The README's model card section, rendered from the sidecar and the evaluation report."""
    training = sidecar.get("training", {})
    data = training.get("data", {})
    config = training.get("config", {})
    w, c, st, sc = report["windows"], report["clips"], report["stream"], report["scene"]
    t = sidecar["thresholds"]
    agreement = sidecar.get("int8_check", {})
    features = FeatureParams.from_dict(sidecar["features"])
    lines = [
        f"## Model card: `{sidecar['name']}`",
        "",
        f"- **File**: `models/{sidecar['name']}.tflite`, {sidecar['size_bytes']} bytes, full-integer int8 "
        f"(int8 input and output), sha256 `{sidecar['sha256'][:16]}…`; sidecar `models/{sidecar['name']}.json`.",
        f"- **Network**: {_network_text(config, float(training.get('output_temperature', 1.0)))}; "
        "input one log-mel window of "
        f"{sidecar['window']['frames']} frames x {features.mel_bands} bands "
        f"({(sidecar['window']['frames'] - 1) * features.hop_ms + features.window_ms:g} ms), scored every "
        f"{sidecar['window']['hop_frames'] * features.hop_ms:g} ms.",
        "- **Intended use**: raising an alarm for human screams (distress, fear) near a microphone, with a person "
        "or an automation checking the event. Not for identifying people, not for evidence, and not a "
        "replacement for other alarms.",
        f"- **Training data**: `{data.get('root')}`: {data.get('clips', {}).get('scream')} screams "
        f"({data.get('minutes', {}).get('scream')} min) and {data.get('clips', {}).get('non_scream')} non-screams "
        f"({data.get('minutes', {}).get('non_scream')} min), split by group (no group on two sides): "
        + ", ".join(
            f"{k} {v['clips']} clips / {v['screams']} screams / {v['groups']} groups"
            for k, v in data.get("splits", {}).items()
        )
        + ".",
        f"- **Training**: `scream train` {_recipe_text(config)}: balanced batches, hard negatives weighted "
        f"x{config.get('hard_negative_weight')}, augmentation (gain, background and coloured-noise mixing at random "
        f"SNR, band-limiting incl. the telephone band, reverberation, time shift{_speed_text(training)}, "
        f"SpecAugment), Adam, binary "
        f"cross-entropy with label smoothing {config.get('label_smoothing')}, early stopping on validation PR AUC "
        f"after {_epochs_text(training.get('epochs_run'))}; {training.get('seconds')} s on this 2-core machine.",
        f"- **Operating point**: on {t['on']}, off {t['off']}; an event starts when {start_rule(t)}. Chosen on "
        f"{t.get('chosen_by', '')}."
        + (
            f" There: event recall {v['event_recall']}, {v['false_alarms_per_hour']} false alarms per hour, median "
            f"onset to alarm {v['median_onset_to_alarm_s']} s (every candidate is in the sidecar)."
            if (v := t.get("validation"))
            else ""
        ),
        f"- **int8 against float** on {agreement.get('windows')} test windows: decisions agree on "
        f"{agreement.get('decision_agreement', 0):.2%}"
        + (f" ({agreement['disagreements']} differ)" if "disagreements" in agreement else "")
        + ", largest score difference "
        f"{agreement.get('max_abs_score_difference')}.",
        "",
        f"Test split (never seen in training or threshold choice; {report['data']['clips']} clips, "
        f"{report['data']['screams']} screams), scored by the edge's own int8 path and live decisions "
        f"({gate_text(report)}):",
        "",
        "| metric (95% interval, resampling recording groups) | windows | clips |",
        "| --- | ---: | ---: |",
    ]
    for key, label in (*RANKING_LABELS.items(), ("f1_at_threshold", "F1 at `on`")):
        lines.append(f"| {label} | {_cell(w, key)} | {_cell(c, key)} |")
    lines += [
        "",
        f"- Continuous non-scream stream ({st['hours'] * 60:.1f} min of the test split's non-screams back to back): "
        f"**{st['false_alarms']} false alarms = {st['false_alarms_per_hour']} per hour**{_rate_interval(st)}"
        + (
            f"; {st['at_clip_boundary']} of them started in a window where one clip ends and the next begins, "
            f"which {st['boundary_window_share']:.0%} of the stream's windows hold (clips meet abruptly there, "
            "unlike sounds in a room)."
            if st.get("fired_in")
            else "."
        ),
        f"- Scene ({sc.get('scenes', 1)} reorderings of that stream, each with the {report['data']['screams']} test "
        f"screams inserted at 0-20 dB over the local background, pooled): event recall **{sc['event_recall']}** "
        f"({sc['detected']} of {sc['screams']}), {sc['false_alarms_per_hour']} false alarms per hour, "
        f"median scream onset to alarm {sc['median_onset_to_alarm_s']} s.",
        "",
        "| target (DESIGN.md) | measured | 95% interval | met |",
        "| --- | ---: | ---: | :---: |",
    ]
    for label, block, key, op, target in TARGETS:
        value = report[block][key]
        met = value >= target if op == ">=" else value <= target
        interval = interval_of(report[block], key)
        span = f"{interval[0]:.3g}-{interval[1]:.3g}" if interval else ""
        lines.append(f"| {label} {op} {target} | {value} | {span} | {'yes' if met else '**no**'} |")
    families = report["negatives"]["family"]
    worst = sorted(families.items(), key=lambda kv: -kv[1]["false_alarm_rate"])
    lines += [
        "",
        "**Limitations.** Most training screams are acted or game death cries; few are real recordings, and "
        "the test split has only a few dozen screams from fewer recording groups, so every number above has "
        "wide error bars (the 95% intervals above). "
        "Non-screams that still fire (clip peak at or above `on`): "
        + ", ".join(f"{k} {v['false_alarm_clips']}/{v['clips']}" for k, v in worst if v["false_alarm_clips"])
        + "."
        + (
            f" At {st['false_alarms_per_hour']} false alarms per hour the model is far from the 0.5 target: on a "
            "real site use schedules and the loudness gate, raise `[detector] on_threshold`, the patience or the "
            "smoothing where alarms are too frequent, and review the saved clips before acting on alarms."
            if st["false_alarms_per_hour"] > 0.5
            else ""
        ),
    ]
    if variants := report.get("decision_variants"):
        lines += [
            "",
            "Fewer false alarms for later, fewer alarms: the same test stream and scenes under other `[detector]` "
            "decisions (patience, or smoothing: the mean score of the last m windows meets the thresholds):",
            "",
            *variants_table(variants),
        ]
    if conditions := report.get("conditions"):
        lines += [
            "",
            "Other microphones and rooms: every test clip transformed, same model and `on` (more in the full report):",
            "",
            "| recording condition | window ROC AUC | recall at 1% FPR | screams found | non-screams firing |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        lines += [
            f"| {name} | {row['roc_auc']} | {row['recall_at_1pct_fpr']} | {row['screams_found']}/{row['screams']} "
            f"| {row['non_screams_firing']}/{row['non_screams']} |"
            for name, row in conditions.items()
        ]
    lines += [
        "",
        f"Sources and licences of the training data ({len(data.get('sources', {}))} sources):",
        "",
        "| source | licence | screams | non-screams |",
        "| --- | --- | ---: | ---: |",
    ]
    for source, entry in sorted(data.get("sources", {}).items()):
        licence = str(entry.get("licence", "")).replace("|", "/")
        lines.append(f"| {source} | {licence} | {entry.get('scream', 0)} | {entry.get('non_scream', 0)} |")
    rel = report_dir.as_posix()
    lines += [
        "",
        f"Full report: [`{rel}/report.md`]({rel}/report.md) (plots, per-category false alarms, missed screams).",
    ]
    return "\n".join(lines) + "\n"


# -- scream crossval ---------------------------------------------------------------------------
def crossval_baseline_lines(report: dict[str, Any]) -> list[str]:
    """Markdown for the comparison with `--baseline`, if the report has one."""
    base = report.get("baseline")
    if not base:
        return []
    changes = "; ".join(
        f"{key} {ours!r} (baseline {theirs!r})" for key, (ours, theirs) in base["recipe_differences"].items()
    )
    return [
        "",
        f"## Against the baseline recipe `{base['path']}`",
        "",
        f"Recipe: {changes or 'the same fields (the runs differ only in code or data)'}. Both runs' fold models "
        "scored the same test folds; each difference (this recipe minus the baseline) has a 95% interval from "
        "resampling recording groups with both meeting the same resamples: an interval that holds 0 is no "
        "evidence either way.",
        "",
        *paired_table(base, "this recipe"),
        *_paired_headline_lines(base.get("headline")),
        *_paired_headline_lines(base.get("headline_audited"), _audited_caption(base.get("headline_audited"))),
        "",
        f"Continuous non-scream stream ({base['stream_hours']} h), each fold model with its own decisions: "
        f"{base['model_stream_false_alarms']} false alarms against the baseline's {base['stream_false_alarms']}.",
    ]


# The targets of the training issue, for the pooled table.
CROSSVAL_TARGETS = {"roc_auc": (">=", 0.97), "recall_at_1pct_fpr": (">=", 0.90)}

MAX_FALSE_ALARMS_PER_HOUR = 0.5


def _interval_text(block: dict[str, Any], key: str) -> str:
    pair = interval_of(block, key)
    return f"{pair[0]}-{pair[1]}" if pair else "n/a"


def headline_lines(headline: dict[str, Any], *, what: str) -> list[str]:
    """The scene headline (train/scenes.py curve_headline) as Markdown."""
    if not headline:
        return []

    def cell(key: str) -> str:
        return _headline_value(headline, key, bold=True)

    return [
        f"Scenes of {what} ({headline['screams']} screams inserted at 0-20 dB into {headline['hours']} h of "
        "non-screams, decided as `listen` decides), each fold at the `on` its own scenes allow:",
        "",
        "| event recall at <= 2 false alarms/h | event recall at <= 5 false alarms/h | false alarms/h at recall 0.8 |",
        "| ---: | ---: | ---: |",
        f"| {cell('recall_at_2_fa_per_hour')} | {cell('recall_at_5_fa_per_hour')} "
        f"| {cell('fa_per_hour_at_recall_0.8')} |",
        "",
        "Intervals: recall resamples whole scream sources, false alarms are an exact Poisson interval. The "
        "threshold is picked on the scenes measured, so this is the curve the scores allow, not an operating "
        "point a site gets (that is the stream and scene rows below, at each model's own `on`).",
        *_onset_sentence(headline),
    ]


def _onset_sentence(headline: dict[str, Any]) -> list[str]:
    """The median onset to alarm of the screams each budget's recall counts, if the curves carry onsets."""
    onsets = {b: headline.get(f"median_onset_at_{b}_fa_per_hour_s") for b in (2, 5)}
    if all(v is None for v in onsets.values()):
        return []
    said = " and ".join(f"{'-' if v is None else v} s at <= {b}" for b, v in onsets.items())
    return [
        "",
        f"Median scream onset to alarm of the screams found there: {said} false alarms/h (each fold at that "
        "threshold, so recipes compare at one false-alarm rate).",
    ]


def _paired_headline_lines(paired: dict[str, Any] | None, what: str = "scenes") -> list[str]:
    if not paired:
        return []
    lines = ["", f"| {what} | this recipe | baseline | difference (95% interval, paired over scream sources) |"]
    lines.append("| --- | ---: | ---: | ---: |")
    for budget in (2, 5):
        key = f"recall_at_{budget}_fa_per_hour"
        row = paired[key]
        interval = row.get("interval_95")
        span = f" ({interval[0]:+.3f} to {interval[1]:+.3f})" if interval else ""
        difference = "-" if row["difference"] is None else f"{row['difference']:+.4f}{span}"  # no screams
        lines.append(
            f"| event recall at <= {budget} false alarms/h | {paired['model'][key]} | {paired['baseline'][key]} "
            f"| {difference} |"
        )
    key = "fa_per_hour_at_recall_0.8"
    lines.append(f"| false alarms/h at recall 0.8 | {paired['model'][key]} | {paired['baseline'][key]} | |")
    for budget in (2, 5):
        key = f"median_onset_at_{budget}_fa_per_hour_s"
        model, base = paired["model"].get(key), paired["baseline"].get(key)
        if model is not None or base is not None:
            lines.append(f"| median onset to alarm (s) at <= {budget} false alarms/h | {model} | {base} | |")
    return lines


def _headline_value(headline: dict[str, Any], key: str, *, bold: bool = False) -> str:
    """A headline's value with its interval, or "not reached"."""
    value, interval = headline.get(key), headline.get(f"{key}_interval_95")
    if value is None:
        return "not reached"
    return (f"**{value}**" if bold else f"{value}") + (f" ({interval[0]}-{interval[1]})" if interval else "")


def _audited_caption(paired: dict[str, Any] | None) -> str:
    """The first column's title of the paired table over audited screams."""
    if not paired:
        return ""
    return f"scenes, the {paired['model']['screams']} of {paired['of']} screams with teacher audit >= {paired['at']:g}"


def audited_headline_lines(audited: dict[str, Any] | None) -> list[str]:
    """The headline over the inserted screams the teacher audit does not reject (train/crossval.py
    `audited_headline`), in one paragraph."""
    if not audited:
        return []

    def value(key: str) -> str:
        return _headline_value(audited, key)

    return [
        f"Among the {audited['screams']} of {audited['of']} inserted screams whose teacher audit (the manifest's "
        f"`teacher_scream`) is at least {audited['at']:g}: event recall {value('recall_at_2_fa_per_hour')} at <= 2 "
        f"and {value('recall_at_5_fa_per_hour')} at <= 5 false alarms/h; false alarms/h at recall 0.8 "
        f"{value('fa_per_hour_at_recall_0.8')}. The others, mostly game death cries the teacher hears as speech, "
        "groans or grunts, stay in the scenes and count neither way (an alarm on one is neither found nor false). "
        "The teacher chose this cut, so it flatters a teacher row, not a recipe's.",
        "",
    ]


def _crossval_headline(report: dict[str, Any], unit: str) -> list[str]:
    if not report.get("headline"):
        return []
    spread = report.get("level_spread_db")
    what = f"each fold's own test {unit}" + (f", non-screams within +-{spread:g} dB" if spread else "")
    if report.get("hop_ms"):
        what += f", decided with `[detector] hop_ms = {report['hop_ms']}`"
    return [*headline_lines(report["headline"], what=what), "", *audited_headline_lines(report.get("headline_audited"))]


def crossval_markdown(report: dict[str, Any]) -> str:
    pooled, spread, recipe = report["pooled"], report["fold_spread"], report["recipe"]
    by_source = report.get("split_by") == "source"
    unit = "sources" if by_source else "recording groups"
    lines = [
        "# Cross-validation of the training recipe",
        "",
        *_crossval_headline(report, unit),
        f"- data: `{report['data']}`, {report['folds']} folds of whole {unit} (split seed "
        f"{report['split_seed']}); each fold model "
        "tests on its fold, validates on the next, trains on the rest, and picks its own thresholds and "
        "operating point on its validation fold",
        f"- recipe: {recipe.get('members')} network(s) of width {recipe.get('width')}, at most {recipe.get('epochs')} "
        f"epochs of {recipe.get('steps_per_epoch')} steps, seed {recipe.get('seed')}; {report['scenes_per_fold']} "
        "scene(s) per fold",
        f"- out of fold: {pooled['clips']} clips, {pooled['screams']} screams from {pooled['scream_groups']} "
        f"recording groups; training the fold models took "
        f"{sum(row['training_seconds'] or 0 for row in report['fold_rows']) / 60:.1f} minutes in all (their sidecars), "
        f"this run {report.get('seconds', 0) / 60:.1f} minutes, in which "
        f"{sum(row['trained_this_run'] for row in report['fold_rows'])} of the {report['folds']} were trained",
        "",
        "## Per fold (each on its own test fold, at its own `on`)",
        "",
        "| fold | screams (groups) | window ROC AUC | PR AUC | recall at 1% FPR | recall at 5% FPR "
        "| clip ROC AUC | `on` | stream false alarms/h | scene event recall | training (min) |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in report["fold_rows"]:
        minutes = f"{row['training_seconds'] / 60:.1f}" if row.get("training_seconds") else "n/a"
        lines.append(
            f"| {row['fold']} | {row['screams']} ({row['scream_groups']}) | {row['roc_auc']} | {row['pr_auc']} "
            f"| {row['recall_at_1pct_fpr']} | {row['recall_at_5pct_fpr']} | {row['clip_roc_auc']} | {row['on']} "
            f"| {row['stream_false_alarms_per_hour']} ({row['stream_false_alarms']}) | {row['scene_event_recall']} "
            f"| {minutes} |"
        )
    windows, stream = pooled["windows"], pooled["stream"]
    lines += [
        "",
        "## Pooled out of fold",
        "",
        "Ranking metrics pool every fold's scores (several models' scores ranked together, so one "
        "threshold across models: a slightly pessimistic view) with a 95% interval from resampling whole "
        "recording groups; beside them the mean and standard deviation of the folds' own values.",
        "",
        "| metric | pooled | 95% interval | fold mean (sd) | target |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for key, label in RANKING_LABELS.items():
        target = CROSSVAL_TARGETS.get(key)
        lines.append(
            f"| window {label} | {windows[key]} | {_interval_text(windows, key)} "
            f"| {spread[key]['mean']} ({spread[key]['sd']}) | {f'{target[0]} {target[1]}' if target else ''} |"
        )
    clips = pooled["clips_ranking"]
    lines.append(
        f"| clip ROC AUC | {clips['roc_auc']} | {_interval_text(clips, 'roc_auc')} "
        f"| {spread['clip_roc_auc']['mean']} ({spread['clip_roc_auc']['sd']}) | |"
    )
    low, high = stream["false_alarms_per_hour_interval_95"]
    lines.append(
        f"| non-scream stream false alarms/h | {stream['false_alarms_per_hour']} ({stream['false_alarms']} in "
        f"{stream['hours']} h) | {low}-{high} | {spread['stream_false_alarms_per_hour']['mean']} "
        f"({spread['stream_false_alarms_per_hour']['sd']}) | <= {MAX_FALSE_ALARMS_PER_HOUR} |"
    )
    scene, own = pooled["scene"], pooled["windows_at_own_on"]
    lines += [
        f"| scene event recall | {scene['event_recall']} ({scene['detected']} of {scene['screams']}) | "
        f"| {spread['scene_event_recall']['mean']} ({spread['scene_event_recall']['sd']}) | |",
        "",
        f"At each fold model's own `on`: window recall {own['recall']}, false-positive rate "
        f"{own['false_positive_rate']} (TP / FP / TN / FN {own['true_positive']} / {own['false_positive']} / "
        f"{own['true_negative']} / {own['false_negative']}); "
        f"scenes {scene['false_alarms_per_hour']} false alarms per hour. {stream['at_clip_boundary']} of the "
        f"stream's {stream['false_alarms']} false alarms started in a window holding the end of one clip and the "
        f"start of the next ({stream['boundary_window_share']:.0%} of its windows do).",
        "",
        "`[detector]` decisions, each at its fold model's own `on`, pooled over the folds:",
        "",
        "| decisions | chosen by folds | stream false alarms/h | scene event recall | scene false alarms/h "
        "| onset to alarm (s, median of folds) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
        *(
            f"| {v['decisions']} | {v['shipped_by_folds']} | {v['stream_false_alarms_per_hour']} "
            f"({v['stream_false_alarms']}) | {v['scene_event_recall']} | {v['scene_false_alarms_per_hour']} "
            f"| {v['median_of_fold_median_onset_to_alarm_s']} |"
            for v in report["decision_variants"]
        ),
        "",
        "Recording conditions (every clip of each test fold transformed, as in `scream evaluate`):",
        "",
        "| condition | window ROC AUC (fold mean) | recall at 1% FPR (fold mean) | screams found "
        "| non-screams firing |",
        "| --- | ---: | ---: | ---: | ---: |",
        *(
            f"| {name} | {c['fold_mean_roc_auc']} | {c['fold_mean_recall_at_1pct_fpr']} "
            f"| {c['screams_found']}/{c['screams']} | {c['non_screams_firing']}/{c['non_screams']} |"
            for name, c in report["conditions"].items()
        ),
        "",
        "Negatives that cause false alarms (clip peak at or above its fold model's `on`):",
        "",
        "| family | clips | false-alarm clips | rate |",
        "| --- | ---: | ---: | ---: |",
        *(
            f"| {name} | {row['clips']} | {row['false_alarm_clips']} "
            f"| {row['false_alarm_clips'] / max(row['clips'], 1):.3f} |"
            for name, row in report["negative_families"].items()
        ),
        "",
        "By source: every source's clips are scored by models that never heard that recording group "
        "(a source's groups can sit in different folds):",
        "",
        "| source | screams found | non-screams firing |",
        "| --- | ---: | ---: |",
        *(
            f"| {name} | {row['screams_found']}/{row['screams']} | {row['false_alarm_clips']}/{row['non_screams']} |"
            for name, row in report["sources"].items()
        ),
        "",
        "Each fold's full report (per category, missed screams, false alarms): `fold-K-report/report.md`.",
        *crossval_baseline_lines(report),
        "",
    ]
    return "\n".join(lines)


# -- scream crossval-pool ----------------------------------------------------------------------------
def _signed(value: float | None) -> str:
    return "-" if value is None else f"{value:+.4f}"


def _range_text(pair: list[float] | None) -> str:
    return "-" if not pair else f"{pair[0]} to {pair[1]}"


def _pool_run_line(row: dict[str, Any]) -> str:
    """One seed's row: recall at each budget (this / baseline / difference) and its secondary differences."""
    head = row["headline"]
    if "model" not in head:
        alone = " | ".join(str(head[f"recall_at_{b}_fa_per_hour"]) for b in (2, 5))
        return f"| `{row['path']}` | {row['seed']} | {alone} |"
    cells = []
    for budget in (2, 5):
        key = f"recall_at_{budget}_fa_per_hour"
        cells.append(f"{head['model'][key]} / {head['baseline'][key]} / {_signed(head[key]['difference'])}")
    secondary = []
    for block, metric in (("clips", "roc_auc"), ("windows", "pr_auc")):
        value = (row.get(block) or {}).get(metric)
        secondary.append(_signed(value["difference"]) if value else "-")
    ours, theirs = row.get("stream_false_alarms") or [None, None]
    return (
        f"| `{row['path']}` | {row['seed']} | `{row['baseline']['path']}` ({row['baseline']['seed']}) "
        f"| {' | '.join(cells)} | {' | '.join(secondary)} | {ours} / {theirs} |"
    )


def pool_markdown(report: dict[str, Any]) -> str:
    """`scream crossval-pool`'s report (train/pool.py)."""
    paired = "recipe_differences" in report
    recipe = report["recipe"]
    lines = [
        f"# One recipe at {len(report['seeds'])} training seeds, pooled",
        "",
        f"- data: `{report['data']}`, {report['folds']} folds by {report['split_by']} (split seed "
        f"{report['split_seed']}), {report['scenes_per_fold']} scene(s) per fold; training seeds "
        f"{', '.join(str(s) for s in report['seeds'])}",
        f"- recipe: {recipe.get('members')} network(s) of width {recipe.get('width')}, window "
        f"{recipe.get('window_frames')} frames, at most {recipe.get('epochs')} epochs",
    ]
    if paired:
        differences = report["recipe_differences"].items()
        changes = "; ".join(f"{k} {ours!r} (baseline {theirs!r})" for k, (ours, theirs) in differences)
        lines.append(f"- against the baseline recipe: {changes or 'the same fields (code or data differ)'}")
    lines += ["", "## Each seed", ""]
    if paired:
        lines += [
            "Each run's scenes follow its seed; its baseline (the baseline recipe at that seed) is scored on "
            "the same scenes. Recall: this recipe / baseline / difference.",
            "",
            "| run | seed | baseline (seed) | recall at <= 2 false alarms/h | recall at <= 5 false alarms/h "
            "| clip ROC AUC difference | window PR AUC difference | stream false alarms (this / baseline) |",
            "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |",
        ]
    else:
        lines += [
            "| run | seed | recall at <= 2 false alarms/h | recall at <= 5 false alarms/h |",
            "| --- | ---: | ---: | ---: |",
        ]
    lines += [_pool_run_line(row) for row in report["runs"]]
    lines += ["", "## Pooled over the seeds", ""]
    if paired:
        head = report["headline"]
        lines += [
            f"{head['model']['screams']} inserted screams in {head['model']['hours']} h of scenes over all seeds. "
            "Every seed tests the same sources, so each resample draws a source's screams at every seed at once; "
            "the interval still holds no training variance beyond the seeds pooled, so read a difference as "
            "resolved only when the interval excludes 0 and every seed's difference has its sign.",
            *_paired_headline_lines(head),
            *_paired_headline_lines(report.get("headline_audited"), _audited_caption(report.get("headline_audited"))),
            "",
            "| seed spread | this recipe | baseline | difference | verdict |",
            "| --- | ---: | ---: | ---: | --- |",
        ]
        for budget in (2, 5):
            s = report["seed_spread"][f"recall_at_{budget}_fa_per_hour"]
            lines.append(
                f"| event recall at <= {budget} false alarms/h | {_range_text(s['model_range'])} "
                f"| {_range_text(s['baseline_range'])} | {_range_text(s['difference_range'])} | {s['verdict']} |"
            )
    else:
        lines += [
            *headline_lines(report["headline"], what=f"all {len(report['seeds'])} seeds"),
            "",
            *audited_headline_lines(report.get("headline_audited")),
            "| seed spread | this recipe |",
            "| --- | ---: |",
            *(
                f"| event recall at <= {b} false alarms/h "
                f"| {_range_text(report['seed_spread'][f'recall_at_{b}_fa_per_hour']['model_range'])} |"
                for b in (2, 5)
            ),
        ]
    return "\n".join(lines) + "\n"
