"""Remote alerts that lose nothing: MQTT (with Home Assistant discovery) and a signed webhook,
fed from a durable SQLite outbox so a dead broker or endpoint never blocks detection.

Delivery is at least once and in order per channel: a message leaves the outbox only after the
broker acknowledged it (QoS 1 PUBACK) or the endpoint answered 2xx. Consumers deduplicate by event id.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import logging
import re
import sqlite3
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from edge import __version__
from edge.config import MqttConfig, OutboxConfig, SiteConfig, WebhookConfig
from edge.errors import ExtraMissingError, ScreamError
from edge.sinks import AlarmMessage, Message

log = logging.getLogger("scream")
RETRY_AFTER_MAX_S = 3600.0  # a receiver asking for a longer wait gets an hour


class DeliveryError(ScreamError, RuntimeError):
    """Delivery failed for now (broker down, timeout, 5xx): the message stays and is retried, not
    before `retry_after_s` when the receiver asked for that (HTTP Retry-After)."""

    def __init__(self, message: str, *, retry_after_s: float = 0.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class PermanentDeliveryError(DeliveryError):
    """The receiver refused the message for good (4xx): it moves to the failed table and is reported."""


class Outbox:
    """Durable FIFO per channel in SQLite, bounded; what is dropped past the bound is counted."""

    def __init__(self, path: Path, *, max_messages: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.max_messages = max_messages
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS messages (id INTEGER PRIMARY KEY AUTOINCREMENT, channel TEXT NOT NULL,"
                " payload TEXT NOT NULL, created REAL NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,"
                " last_error TEXT NOT NULL DEFAULT '')"
            )
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS failed (id INTEGER PRIMARY KEY, channel TEXT NOT NULL,"
                " payload TEXT NOT NULL, created REAL NOT NULL, error TEXT NOT NULL)"
            )
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS counters (channel TEXT NOT NULL, name TEXT NOT NULL,"
                " value INTEGER NOT NULL, PRIMARY KEY (channel, name))"
            )

    def _bump(self, channel: str, name: str, by: int) -> None:
        self._db.execute(
            "INSERT INTO counters VALUES (?, ?, ?) ON CONFLICT(channel, name) DO UPDATE SET value = value + ?",
            (channel, name, by, by),
        )

    def put(self, channel: str, payload: dict[str, Any]) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                "INSERT INTO messages (channel, payload, created) VALUES (?, ?, ?)",
                (channel, json.dumps(payload, sort_keys=True), time.time()),
            )
            (count,) = self._db.execute("SELECT COUNT(*) FROM messages WHERE channel = ?", (channel,)).fetchone()
            excess = count - self.max_messages
            if excess > 0:
                self._db.execute(
                    "DELETE FROM messages WHERE id IN (SELECT id FROM messages WHERE channel = ? ORDER BY id LIMIT ?)",
                    (channel, excess),
                )
                self._bump(channel, "dropped", excess)
            self._db.execute("COMMIT")

    def oldest(self, channel: str) -> tuple[int, dict[str, Any], int] | None:
        with self._lock:
            row = self._db.execute(
                "SELECT id, payload, attempts FROM messages WHERE channel = ? ORDER BY id LIMIT 1", (channel,)
            ).fetchone()
        return (row[0], json.loads(row[1]), row[2]) if row else None

    def ack(self, message_id: int, channel: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM messages WHERE id = ?", (message_id,))
            self._bump(channel, "delivered", 1)

    def retry_later(self, message_id: int, error: str) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE messages SET attempts = attempts + 1, last_error = ? WHERE id = ?", (error, message_id)
            )

    def reject(self, message_id: int, channel: str, error: str) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                "INSERT OR REPLACE INTO failed SELECT id, channel, payload, created, ? FROM messages WHERE id = ?",
                (error, message_id),
            )
            self._db.execute("DELETE FROM messages WHERE id = ?", (message_id,))
            self._bump(channel, "failed", 1)
            self._db.execute("COMMIT")

    def stats(self, channel: str) -> dict[str, Any]:
        with self._lock:
            pending, oldest = self._db.execute(
                "SELECT COUNT(*), MIN(created) FROM messages WHERE channel = ?", (channel,)
            ).fetchone()
            counters = dict(self._db.execute("SELECT name, value FROM counters WHERE channel = ?", (channel,)))
        return {
            "pending": pending,
            "oldest_pending_s": round(time.time() - oldest, 1) if oldest is not None else 0.0,
            "delivered": counters.get("delivered", 0),
            "dropped": counters.get("dropped", 0),
            "failed": counters.get("failed", 0),
        }

    def close(self) -> None:
        with self._lock:
            self._db.close()


class Transport(Protocol):
    def deliver(self, message: dict[str, Any]) -> None: ...

    def health(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


class AlertChannel:
    """A `Sink` that stores alarms in the outbox and a thread that delivers them in order."""

    def __init__(
        self, name: str, outbox: Outbox, transport: Transport, config: OutboxConfig, *, close_grace_s: float = 5.0
    ) -> None:
        self.name = name
        self.close_grace_s = close_grace_s
        self.outbox = outbox
        self.transport = transport
        self.config = config
        self.last_error = ""
        self._wake = threading.Event()
        self._stop = threading.Event()
        # A transport that can tell when it is back (MQTT's reconnect) wakes the sender at once.
        if hasattr(transport, "on_ready"):
            transport.on_ready = self._wake.set
        self._thread = threading.Thread(target=self._deliver_loop, name=f"deliver-{name}", daemon=True)
        self._thread.start()

    def handle(self, message: Message) -> None:
        if isinstance(message, AlarmMessage) and self.name in message.outputs:
            self.outbox.put(self.name, {"kind": message.kind, "event": message.event})
            self._wake.set()

    def _deliver_loop(self) -> None:
        backoff = self.config.retry_initial_s
        while not self._stop.is_set():
            item = self.outbox.oldest(self.name)
            if item is None:
                self._wake.wait(1.0)
                self._wake.clear()
                continue
            message_id, payload, _ = item
            try:
                self.transport.deliver(payload)
            except PermanentDeliveryError as exc:
                self.last_error = str(exc)
                log.error("%s refused an alert for good: %s", self.name, exc)
                self.outbox.reject(message_id, self.name, str(exc))
                continue
            except Exception as exc:  # every other failure is retried: this thread must never die
                if isinstance(exc, DeliveryError | OSError):
                    self.last_error = str(exc)
                else:
                    self.last_error = f"{type(exc).__name__}: {exc}"
                    log.exception("%s delivery failed unexpectedly; retrying", self.name)
                self.outbox.retry_later(message_id, self.last_error)
                asked = exc.retry_after_s if isinstance(exc, DeliveryError) else 0.0
                if asked > 0:  # the receiver said when: neither a new alarm nor the backoff goes sooner
                    self._stop.wait(min(asked, RETRY_AFTER_MAX_S))
                    backoff = min(backoff * 2, self.config.retry_max_s)
                    continue
                # Backoff, cut short by a new alarm or the transport coming back (never by nothing).
                self._wake.clear()
                if self._wake.wait(backoff):
                    self._wake.clear()
                    backoff = self.config.retry_initial_s
                else:
                    backoff = min(backoff * 2, self.config.retry_max_s)
                continue
            self.outbox.ack(message_id, self.name)
            self.last_error = ""
            backoff = self.config.retry_initial_s

    def health(self) -> dict[str, Any]:
        return {
            **self.outbox.stats(self.name),
            **self.transport.health(),
            "last_delivery_error": self.last_error,
            "delivering": self._thread.is_alive(),
            "alert_after_s": self.config.alert_after_s,
        }

    def close(self) -> None:
        """Give pending alerts a short grace period to go out; what remains waits in the outbox."""
        deadline = time.monotonic() + self.close_grace_s
        while self.outbox.stats(self.name)["pending"] and time.monotonic() < deadline:
            self._wake.set()
            time.sleep(0.05)
        self._stop.set()
        self._wake.set()
        self._thread.join(10)
        self.transport.close()


def node_id(site: SiteConfig) -> str:
    return re.sub(r"[^a-z0-9_]+", "_", site.name.lower()).strip("_") or "scream_detector"


class MqttTransport:
    """paho-mqtt client: QoS 1, retained state and availability with a last will, HA discovery."""

    def __init__(self, config: MqttConfig, site: SiteConfig) -> None:
        try:
            import paho.mqtt.client as mqtt
            from paho.mqtt.enums import CallbackAPIVersion
        except ImportError as exc:
            raise ExtraMissingError("paho.mqtt", "alerts", "MQTT alerts") from exc
        self.config = config
        self.node = node_id(site)
        base = f"{config.topic_prefix}/{self.node}"
        self.topics = {name: f"{base}/{name}" for name in ("availability", "state", "score", "event")}
        self.discovery = discovery_messages(config, site, self.node, self.topics)
        self.connected = threading.Event()
        self.on_ready: Callable[[], None] | None = None  # set by the channel: called on every (re)connect
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=config.client_id or f"scream-{self.node}")
        if config.username:
            client.username_pw_set(config.username, config.password or None)
        if config.tls:
            client.tls_set(ca_certs=config.ca_file or None)
        client.will_set(self.topics["availability"], "offline", qos=1, retain=True)
        client.reconnect_delay_set(1, 5)  # a returning broker is found within seconds
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        self.client = client
        client.connect_async(config.host, config.port, keepalive=config.keepalive_s)
        client.loop_start()

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any = None) -> None:
        if getattr(reason, "is_failure", False):
            log.warning("MQTT broker refused the connection: %s", reason)
            return
        client.publish(self.topics["availability"], "online", qos=1, retain=True)
        if self.config.discovery:
            for topic, payload in self.discovery.items():
                client.publish(topic, json.dumps(payload, sort_keys=True), qos=1, retain=True)
        self.connected.set()
        if self.on_ready is not None:
            self.on_ready()

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any = None) -> None:
        self.connected.clear()

    def deliver(self, message: dict[str, Any]) -> None:
        if not self.connected.is_set():
            raise DeliveryError(f"not connected to MQTT broker {self.config.host}:{self.config.port}")
        event = message["event"]
        if message["kind"] == "start":
            publishes = [(self.topics["state"], "ON", True)]
        else:
            publishes = [
                (self.topics["event"], json.dumps(event, sort_keys=True), False),
                (self.topics["score"], f"{event['peak_score']:.4f}", True),
                (self.topics["state"], "OFF", True),
            ]
        for topic, payload, retain in publishes:
            info = self.client.publish(topic, payload, qos=1, retain=retain)
            try:
                info.wait_for_publish(self.config.publish_timeout_s)
            except (RuntimeError, ValueError) as exc:
                raise DeliveryError(f"MQTT publish to {topic} failed: {exc}") from exc
            if not info.is_published():
                raise DeliveryError(f"MQTT broker did not acknowledge {topic} within {self.config.publish_timeout_s} s")

    def health(self) -> dict[str, Any]:
        return {"connected": self.connected.is_set(), "broker": f"{self.config.host}:{self.config.port}"}

    def close(self) -> None:
        if self.connected.is_set():
            info = self.client.publish(self.topics["availability"], "offline", qos=1, retain=True)
            info.wait_for_publish(2.0)
        self.client.disconnect()
        self.client.loop_stop()


def discovery_messages(
    config: MqttConfig, site: SiteConfig, node: str, topics: dict[str, str]
) -> dict[str, dict[str, Any]]:
    """Home Assistant MQTT discovery: a binary sensor for screams and a sensor for the last score."""
    device = {
        "identifiers": [f"scream_detector_{node}"],
        "name": site.name,
        "manufacturer": "scream-detector",
        "model": "edge scream detector",
        "sw_version": __version__,
        **({"suggested_area": site.location} if site.location else {}),
    }
    availability = {
        "availability_topic": topics["availability"],
        "payload_available": "online",
        "payload_not_available": "offline",
    }
    prefix = config.discovery_prefix
    return {
        f"{prefix}/binary_sensor/{node}/scream/config": {
            "name": "Scream",
            "unique_id": f"{node}_scream",
            "object_id": f"{node}_scream",
            "state_topic": topics["state"],
            "payload_on": "ON",
            "payload_off": "OFF",
            "device_class": "sound",
            "json_attributes_topic": topics["event"],
            "device": device,
            **availability,
        },
        f"{prefix}/sensor/{node}/last_score/config": {
            "name": "Last scream score",
            "unique_id": f"{node}_last_score",
            "object_id": f"{node}_last_score",
            "state_topic": topics["score"],
            "state_class": "measurement",
            "icon": "mdi:account-voice",
            "device": device,
            **availability,
        },
    }


class WebhookTransport:
    """POST of the event JSON; X-Scream-Signature: sha256=<HMAC of the body> when a secret is set."""

    def __init__(self, config: WebhookConfig) -> None:
        self.config = config

    def body_and_headers(self, message: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        body = json.dumps({"type": f"event_{message['kind']}", **message["event"]}, sort_keys=True).encode()
        headers = {"Content-Type": "application/json", "User-Agent": f"scream-detector/{__version__}"}
        if self.config.secret:
            digest = hmac.new(self.config.secret.encode(), body, hashlib.sha256).hexdigest()
            headers["X-Scream-Signature"] = f"sha256={digest}"
        return body, headers

    def deliver(self, message: dict[str, Any]) -> None:
        body, headers = self.body_and_headers(message)
        request = urllib.request.Request(self.config.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.config.timeout_s) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            if 400 <= exc.code < 500 and exc.code not in (408, 425, 429):
                raise PermanentDeliveryError(f"webhook {self.config.url} answered {exc.code} {exc.reason}") from exc
            wait = _retry_after_s(exc.headers.get("Retry-After", "") if exc.headers else "")
            raise DeliveryError(
                f"webhook {self.config.url} answered {exc.code} {exc.reason}"
                + (f" (retry after {wait:g} s)" if wait else ""),
                retry_after_s=wait,
            ) from exc
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise DeliveryError(f"webhook {self.config.url} unreachable: {exc}") from exc
        except http.client.HTTPException as exc:  # a reply that is not HTTP, or cut short
            raise DeliveryError(
                f"webhook {self.config.url} gave a malformed reply: {type(exc).__name__}: {exc}"
            ) from exc

    def health(self) -> dict[str, Any]:
        return {"url": self.config.url}

    def close(self) -> None:
        pass


def _retry_after_s(value: str) -> float:
    """An HTTP Retry-After header in seconds (a number, or an HTTP date); 0 when absent or unreadable."""
    import email.utils

    value = value.strip()
    if not value:
        return 0.0
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return 0.0
    return max(0.0, when.timestamp() - time.time())


def verify_signature(secret: str, body: bytes, header: str) -> bool:
    """For receivers: constant-time check of an X-Scream-Signature header."""
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header)
