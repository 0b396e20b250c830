"""Runtime configuration: one TOML file loaded into frozen dataclasses and validated at start.

Unknown keys, wrong types and out-of-range values are rejected with the key's dotted name.
Feature parameters never live here: they belong to the model.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.detector import LIMITS, MAX_VERIFY_ATTEMPTS, OUTPUTS, DecisionParams, out_of_range
from edge.errors import ConfigError

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DECISION_DEFAULTS = DecisionParams()
# `[detector]` keys whose 0 means "the model's own" (its sidecar's operating point).
MODEL_OWN = ("on_threshold", "off_threshold", "patience_windows", "patience_of", "smoothing_windows")


@dataclass(frozen=True, kw_only=True)
class SiteConfig:
    name: str = "scream-detector"
    location: str = ""


@dataclass(frozen=True, kw_only=True)
class AudioConfig:
    device: int | str = ""  # index, or a substring of the device name; "" picks the default input
    sample_rate_hz: int = 0  # 0: the model rate if the device offers it, else 48000, 44100, ...
    chunk_ms: int = 100
    queue_s: float = 5.0  # capture queue bound; older audio is dropped (and counted) past it
    retry_initial_s: float = 1.0
    retry_max_s: float = 30.0

    def _check(self) -> dict[str, tuple[bool, str]]:
        return {
            "sample_rate_hz": (
                self.sample_rate_hz == 0 or 8000 <= self.sample_rate_hz <= 192000,
                "0 (automatic) or 8000-192000",
            ),
            "chunk_ms": (10 <= self.chunk_ms <= 1000, "in 10-1000"),
            "queue_s": (0.5 <= self.queue_s <= 120, "in 0.5-120"),
            "retry_initial_s": (
                0.05 <= self.retry_initial_s <= self.retry_max_s,
                "at least 0.05 and at most retry_max_s",
            ),
            "retry_max_s": (self.retry_max_s <= 3600, "at most 3600"),
        }


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    path: str = ""  # "" means the bundled default model
    watch: bool = True  # reload when the file changes (as well as on SIGHUP)
    watch_interval_s: float = 5.0

    def _check(self) -> dict[str, tuple[bool, str]]:
        return {"watch_interval_s": (0.1 <= self.watch_interval_s <= 3600, "in 0.1-3600")}


@dataclass(frozen=True, kw_only=True)
class DetectorConfig:
    """A site's `[detector]` section: overrides of the model's operating point (0 keeps the model's
    own) and the rest of the alarm rule. Ranges are edge.detector's, the one validator."""

    on_threshold: float = 0.0  # 0: the model's own
    off_threshold: float = 0.0  # 0: the model's own (scaled with on_threshold when that is set)
    patience_windows: int = 0  # 0 (with patience_of 0): the model's own k-of-n
    patience_of: int = 0
    smoothing_windows: int = 0  # 0: the model's own; m > 1: thresholds meet the mean score of m windows
    min_event_s: float = _DECISION_DEFAULTS.min_event_s
    max_event_s: float = _DECISION_DEFAULTS.max_event_s
    cooldown_s: float = _DECISION_DEFAULTS.cooldown_s
    loudness_gate_dbfs: float = _DECISION_DEFAULTS.loudness_gate_dbfs  # quieter windows start no event
    noise_floor_margin_db: float = _DECISION_DEFAULTS.noise_floor_margin_db  # > 0: also gate at floor + margin
    hop_ms: int = 0  # 0: the model's own hop; a shorter hop decides sooner and costs more CPU

    def _check(self) -> dict[str, tuple[bool, str]]:
        given = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name != "hop_ms" and not (f.name in MODEL_OWN and getattr(self, f.name) == 0)
        }
        bad = out_of_range(given)
        if (self.patience_windows == 0) != (self.patience_of == 0):
            bad.setdefault("patience_of" if self.patience_of == 0 else "patience_windows", "set with the other")
        checks = {}
        for f in dataclasses.fields(self):
            if f.name == "hop_ms":
                continue
            rule = bad.get(f.name) or LIMITS[f.name][1]
            rule = f"0 (the model's own) or {rule}" if f.name in MODEL_OWN else rule
            checks[f.name] = (f.name not in bad, rule)
        hop_ok = self.hop_ms == 0 or (self.hop_ms % 10 == 0 and 10 <= self.hop_ms <= 1000)
        return checks | {"hop_ms": (hop_ok, "0 (the model's own) or a multiple of 10 in 10-1000")}

    def decisions(self, operating_point: DecisionParams, model_hop_frames: int, hop_frames: int) -> DecisionParams:
        """These settings over the model's operating point (at its hop), for windows `hop_frames` apart."""
        model = operating_point.at_hop(model_hop_frames, hop_frames)
        on = self.on_threshold or model.on_threshold
        off = self.off_threshold or (operating_point.off_threshold * on / operating_point.on_threshold)
        return DecisionParams(
            on_threshold=on,
            off_threshold=min(off, on),
            patience_windows=self.patience_windows or model.patience_windows,
            patience_of=self.patience_of or model.patience_of,
            smoothing_windows=self.smoothing_windows or model.smoothing_windows,
            min_event_s=self.min_event_s,
            max_event_s=self.max_event_s,
            cooldown_s=self.cooldown_s,
            loudness_gate_dbfs=self.loudness_gate_dbfs,
            noise_floor_margin_db=self.noise_floor_margin_db,
        )


@dataclass(frozen=True, kw_only=True)
class VerifierConfig:
    """`[verifier]`: the optional second stage (edge.verifier). A YAMNet-style waveform classifier
    confirms each candidate event; off while `model` is empty."""

    model: str = ""  # a .tflite waveform classifier (YAMNet: yamnet.tflite); "" = no second stage
    class_map: str = ""  # its class map CSV; "" = <model stem>_class_map.csv beside it
    classes: list[str] = field(default_factory=lambda: ["Screaming"])  # the best of these is the score
    head: str = ""  # a head file (scream verifier-head) on the model's embedding; its score replaces `classes`
    # Vetoed below this. 0: the pair recorded in the running model's sidecar for this verifier
    # (`scream verification --record`), which also sets `[detector] on_threshold` while that is 0;
    # a model without one is refused.
    threshold: float = 0.0
    # Verdicts per candidate at most: a vetoed candidate is judged again each time the patience rule
    # is met anew within it, and fires at the first verdict that passes (1: judged once). 0: the
    # model's pair's, or 1 without one.
    attempts: int = 0
    threads: int = 1

    def _check(self) -> dict[str, tuple[bool, str]]:
        return {
            "classes": (bool(self.classes) and all(bool(c) for c in self.classes), "a non-empty list of class names"),
            "threshold": (0.0 <= self.threshold < 1.0, "0 (the model's pair) or in (0, 1)"),
            "attempts": (
                0 <= self.attempts <= MAX_VERIFY_ATTEMPTS,
                f"0 (the model's pair) or in 1-{MAX_VERIFY_ATTEMPTS}",
            ),
            "threads": (1 <= self.threads <= 8, "in 1-8"),
        }


@dataclass(frozen=True, kw_only=True)
class GpioConfig:
    enabled: bool = True
    led_pin: int = 17
    buzzer_pin: int = 27
    active_high: bool = True
    led_blink: bool = False  # steady on during an event, or blinking
    buzzer_on_s: float = 0.5
    buzzer_off_s: float = 0.5
    buzzer_max_s: float = 10.0

    def _check(self) -> dict[str, tuple[bool, str]]:
        return {
            "led_pin": (0 <= self.led_pin <= 53, "a BCM pin number 0-53"),
            "buzzer_pin": (
                0 <= self.buzzer_pin <= 53 and self.buzzer_pin != self.led_pin,
                "a BCM pin number 0-53 other than led_pin",
            ),
            "buzzer_on_s": (0.01 <= self.buzzer_on_s <= 60, "in 0.01-60"),
            "buzzer_off_s": (0.0 <= self.buzzer_off_s <= 60, "in 0-60"),
            "buzzer_max_s": (0.0 <= self.buzzer_max_s <= 3600, "in 0-3600"),
        }


@dataclass(frozen=True, kw_only=True)
class EventLogConfig:
    path: str = "events.jsonl"  # relative paths are under [paths].state_dir
    max_bytes: int = 1_000_000
    backups: int = 5

    def _check(self) -> dict[str, tuple[bool, str]]:
        return {
            "max_bytes": (1000 <= self.max_bytes <= 10**10, "in 1000-10^10"),
            "backups": (0 <= self.backups <= 100, "in 0-100"),
        }


@dataclass(frozen=True, kw_only=True)
class ClipsConfig:
    enabled: bool = True
    dir: str = "clips"
    pre_roll_s: float = 2.0
    post_roll_s: float = 2.0
    max_count: int = 200
    max_bytes: int = 200_000_000
    min_free_bytes: int = 500_000_000
    # With a [verifier]: keep the clips of the candidates it vetoes too (no alarm fires for them),
    # marked vetoed in the event log, for `scream review` to label (site hard negatives, or misses).
    keep_vetoed: bool = False

    def _check(self) -> dict[str, tuple[bool, str]]:
        return {
            "pre_roll_s": (0.0 <= self.pre_roll_s <= 30, "in 0-30"),
            "post_roll_s": (0.0 <= self.post_roll_s <= 30, "in 0-30"),
            "max_count": (1 <= self.max_count <= 10**6, "in 1-1000000"),
            "max_bytes": (10_000 <= self.max_bytes <= 10**12, "in 10000-10^12"),
            "min_free_bytes": (0 <= self.min_free_bytes <= 10**13, "in 0-10^13"),
        }


@dataclass(frozen=True, kw_only=True)
class MqttConfig:
    enabled: bool = False
    host: str = "localhost"
    port: int = 1883
    username: str = ""
    password: str = ""
    tls: bool = False
    ca_file: str = ""  # "" with tls = true: the system's CA store
    client_id: str = ""  # "" = scream-<site name>
    topic_prefix: str = "scream"
    discovery: bool = True
    discovery_prefix: str = "homeassistant"
    keepalive_s: int = 30
    publish_timeout_s: float = 10.0

    def _check(self) -> dict[str, tuple[bool, str]]:
        return {
            "host": (bool(self.host), "a host name or address (not empty)"),
            "port": (1 <= self.port <= 65535, "a TCP port 1-65535"),
            "topic_prefix": (
                bool(self.topic_prefix) and not any(c in self.topic_prefix for c in "#+"),
                "a topic without the wildcards '#' and '+' (not empty)",
            ),
            "keepalive_s": (5 <= self.keepalive_s <= 3600, "in 5-3600"),
            "publish_timeout_s": (0.1 <= self.publish_timeout_s <= 300, "in 0.1-300"),
        }


@dataclass(frozen=True, kw_only=True)
class WebhookConfig:
    enabled: bool = False
    url: str = ""
    secret: str = ""  # non-empty: an X-Scream-Signature HMAC-SHA256 header over the body
    timeout_s: float = 5.0

    def _check(self) -> dict[str, tuple[bool, str]]:
        return {
            "url": (
                not self.enabled or self.url.startswith(("http://", "https://")),
                "an http:// or https:// URL when the webhook is enabled",
            ),
            "timeout_s": (0.1 <= self.timeout_s <= 120, "in 0.1-120"),
        }


@dataclass(frozen=True, kw_only=True)
class OutboxConfig:
    """Remote alerts wait here (SQLite) while a broker or endpoint is down, and survive restarts."""

    path: str = "outbox.sqlite3"
    max_messages: int = 10000  # per channel; the oldest are dropped (and counted) past it
    retry_initial_s: float = 1.0
    retry_max_s: float = 60.0
    alert_after_s: float = 300.0  # an alert waiting longer than this is a problem in `scream status`

    def _check(self) -> dict[str, tuple[bool, str]]:
        return {
            "max_messages": (10 <= self.max_messages <= 10**7, "in 10-10000000"),
            "alert_after_s": (1.0 <= self.alert_after_s <= 86400.0, "in 1-86400"),
            "retry_initial_s": (
                0.01 <= self.retry_initial_s <= self.retry_max_s,
                "at least 0.01 and at most retry_max_s",
            ),
            "retry_max_s": (self.retry_max_s <= 3600, "at most 3600"),
        }


@dataclass(frozen=True, kw_only=True)
class ReviewConfig:
    """`scream review`, the labelling page: where it listens and the token it needs off loopback."""

    bind: str = "127.0.0.1:8080"
    token: str = ""  # required when bind is not a loopback address; "env:NAME" reads $NAME

    def _check(self) -> dict[str, tuple[bool, str]]:
        _host, sep, port = self.bind.rpartition(":")
        token_ok = self.token == "" or len(self.token) >= 16 or self.token.startswith("env:")
        return {
            "bind": (bool(sep) and port.isdigit() and int(port) <= 65535, "HOST:PORT, for example 127.0.0.1:8080"),
            "token": (token_ok, "empty, env:NAME or at least 16 characters"),
        }


@dataclass(frozen=True, kw_only=True)
class PathsConfig:
    state_dir: str = "~/.local/state/scream-detector"
    status_file: str = "status.json"


@dataclass(frozen=True, kw_only=True)
class ScheduleConfig:
    """A time-of-day window (local time) that changes sensitivity and which outputs fire."""

    name: str
    start: str  # "HH:MM"
    end: str  # "HH:MM"; a window may cross midnight
    days: list[str] = field(default_factory=lambda: list(WEEKDAYS))
    on_threshold: float = 0.0  # 0: unchanged
    outputs: list[str] = field(default_factory=lambda: list(OUTPUTS))

    def _check(self) -> dict[str, tuple[bool, str]]:
        return {
            "start": (_parse_hhmm(self.start) is not None, "a time of day as HH:MM"),
            "end": (_parse_hhmm(self.end) is not None, "a time of day as HH:MM"),
            "days": (
                bool(self.days) and all(d in WEEKDAYS for d in self.days),
                "a non-empty list of mon/tue/wed/thu/fri/sat/sun",
            ),
            "on_threshold": (0.0 <= self.on_threshold < 1.0, "0 (unchanged) or in (0, 1)"),
            "outputs": (all(o in OUTPUTS for o in self.outputs), "a list of led/buzzer/event_log/clips/mqtt/webhook"),
        }

    def is_active(self, moment: dt.datetime) -> bool:
        start, end = _parse_hhmm(self.start), _parse_hhmm(self.end)
        assert start is not None and end is not None
        now = moment.time()
        weekday = WEEKDAYS[moment.weekday()]
        if start <= end:
            return weekday in self.days and start <= now < end
        # Crossing midnight: the part after midnight belongs to the previous day's window.
        if now >= start:
            return weekday in self.days
        yesterday = WEEKDAYS[(moment.weekday() - 1) % 7]
        return now < end and yesterday in self.days


@dataclass(frozen=True, kw_only=True)
class Config:
    site: SiteConfig = field(default_factory=SiteConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    verifier: VerifierConfig = field(default_factory=VerifierConfig)
    gpio: GpioConfig = field(default_factory=GpioConfig)
    event_log: EventLogConfig = field(default_factory=EventLogConfig)
    clips: ClipsConfig = field(default_factory=ClipsConfig)
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    webhook: WebhookConfig = field(default_factory=WebhookConfig)
    outbox: OutboxConfig = field(default_factory=OutboxConfig)
    review: ReviewConfig = field(default_factory=ReviewConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    schedule: list[ScheduleConfig] = field(default_factory=list)

    @property
    def state_dir(self) -> Path:
        return Path(os.path.expanduser(self.paths.state_dir))

    def state_path(self, value: str) -> Path:
        path = Path(os.path.expanduser(value))
        return path if path.is_absolute() else self.state_dir / path


def _parse_hhmm(text: str) -> dt.time | None:
    try:
        hours, minutes = text.split(":")
        return dt.time(int(hours), int(minutes))
    except ValueError:
        return None


def _type_ok(value: Any, annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, arg) for arg in typing.get_args(annotation))
    if origin is list:
        (item,) = typing.get_args(annotation)
        return isinstance(value, list) and all(_type_ok(v, item) for v in value)
    if annotation is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is type(None):
        return value is None
    return isinstance(value, annotation)


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def _build(cls: type[Any], table: Any, prefix: str) -> Any:
    if not isinstance(table, dict):
        raise ConfigError(f"{prefix} must be a table, got {type(table).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(table) - set(fields))
    if unknown:
        raise ConfigError(f"unknown key {prefix}.{unknown[0]} (known keys in [{prefix}]: {', '.join(sorted(fields))})")
    values: dict[str, Any] = {}
    for name, value in table.items():
        annotation = hints[name]
        if not _type_ok(value, annotation):
            raise ConfigError(f"{prefix}.{name} must be {_type_name(annotation)}, got {type(value).__name__} {value!r}")
        values[name] = float(value) if annotation is float else value
    missing = [
        n
        for n, f in fields.items()
        if n not in values and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"{prefix}.{missing[0]} is required")
    instance = cls(**values)
    check = getattr(instance, "_check", None)
    if check is not None:
        bad = [(name, rule) for name, (ok, rule) in check().items() if not ok]
        if bad:
            name, rule = bad[0]
            raise ConfigError(f"{prefix}.{name} must be {rule}, got {getattr(instance, name)!r}")
    return instance


def parse_config(data: dict[str, Any]) -> Config:
    hints = typing.get_type_hints(Config)
    unknown = sorted(set(data) - set(hints))
    if unknown:
        raise ConfigError(f"unknown section [{unknown[0]}] (known: {', '.join(sorted(hints))})")
    sections: dict[str, Any] = {}
    for name, value in data.items():
        if name == "schedule":
            if not isinstance(value, list):
                raise ConfigError("schedule must be an array of tables: [[schedule]]")
            sections[name] = [_build(ScheduleConfig, item, f"schedule[{i}]") for i, item in enumerate(value)]
        else:
            sections[name] = _build(hints[name], value, name)
    return Config(**sections)


def load_config(path: str | os.PathLike[str] | None) -> Config:
    """Defaults when path is None; otherwise the validated file."""
    if path is None:
        return Config()
    file = Path(path)
    try:
        data = tomllib.loads(file.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {file} does not exist") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {file} is not valid TOML: {exc}") from exc
    try:
        return parse_config(data)
    except ConfigError as exc:
        raise ConfigError(f"{file}: {exc}") from exc
