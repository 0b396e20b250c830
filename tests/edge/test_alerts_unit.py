"""The alert path without brokers: the outbox, the sender's retries and backoff, the webhook's
status handling and signature, Retry-After, and the MQTT transport against a stand-in paho client.

test_alerts.py runs the same code against a real mosquitto and HTTP server; these run in well under a
second each, so `make mutation` can rerun them for every mutant of edge/alerts.py. The sender's waits
are recorded by a stand-in Event (each real wait is cut to 10 ms), so backoff is checked by value,
not by the clock.
"""

from __future__ import annotations

import email.utils
import hashlib
import hmac
import http.server
import json
import logging
import socket
import sqlite3
import threading
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from edge import alerts
from edge.alerts import (
    RETRY_AFTER_MAX_S,
    AlertChannel,
    DeliveryError,
    Outbox,
    PermanentDeliveryError,
    WebhookTransport,
    _retry_after_s,
    discovery_messages,
    node_id,
    verify_signature,
)
from edge.config import MqttConfig, OutboxConfig, SiteConfig, WebhookConfig
from edge.sinks import AlarmMessage, ClipMessage
from tests.helpers import free_port, wait_until

IDLE_S = 1.0  # the sender's wait on an empty outbox
CONFIG = OutboxConfig(retry_initial_s=0.05, retry_max_s=0.2, alert_after_s=42.0)
SITE = SiteConfig(name="Car Park B", location="Level -1")
EVENT = {"id": "ev0001", "number": 1, "start": 1000.0, "end": 1001.5, "peak_score": 0.9, "clip": "c1.wav"}


# --- the outbox ------------------------------------------------------------------------------------


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    box = Outbox(tmp_path / "var" / "lib" / "outbox.sqlite3", max_messages=3)  # folders made as needed
    yield box
    box.close()


def test_outbox_is_fifo_per_channel_and_keeps_payloads(outbox: Outbox) -> None:
    assert outbox.oldest("mqtt") is None
    outbox.put("mqtt", {"n": 1, "nested": {"b": [1, 2]}})
    outbox.put("webhook", {"n": 10})
    outbox.put("mqtt", {"n": 2})
    first = outbox.oldest("mqtt")
    assert first is not None and first[1:] == ({"n": 1, "nested": {"b": [1, 2]}}, 0)
    web = outbox.oldest("webhook")
    assert web is not None and web[1] == {"n": 10}
    outbox.ack(first[0], "mqtt")
    second = outbox.oldest("mqtt")
    assert second is not None and second[1] == {"n": 2} and second[0] > first[0]
    assert outbox.stats("mqtt")["pending"] == 1 and outbox.stats("webhook")["pending"] == 1
    assert outbox.stats("mqtt")["delivered"] == 1 and outbox.stats("webhook")["delivered"] == 0


def test_outbox_bound_drops_the_oldest_of_that_channel_only(outbox: Outbox) -> None:
    for n in range(5):
        outbox.put("mqtt", {"n": n})
    outbox.put("webhook", {"n": 99})
    stats = outbox.stats("mqtt")
    assert (stats["pending"], stats["dropped"]) == (3, 2)
    assert outbox.stats("webhook") == {**outbox.stats("webhook"), "pending": 1, "dropped": 0}
    oldest = outbox.oldest("mqtt")
    assert oldest is not None and oldest[1] == {"n": 2}
    outbox.put("mqtt", {"n": 5})
    assert outbox.stats("mqtt")["dropped"] == 3


def test_outbox_retry_counts_attempts_and_keeps_the_error(outbox: Outbox) -> None:
    outbox.put("mqtt", {"n": 1})
    item = outbox.oldest("mqtt")
    assert item is not None
    outbox.retry_later(item[0], "broker down")
    outbox.retry_later(item[0], "still down")
    again = outbox.oldest("mqtt")
    assert again is not None and again[0] == item[0] and again[2] == 2
    with sqlite3.connect(outbox.path) as db:
        assert db.execute("SELECT last_error FROM messages").fetchall() == [("still down",)]


def test_outbox_reject_moves_the_message_to_failed_with_its_error(outbox: Outbox) -> None:
    outbox.put("webhook", {"n": 1})
    outbox.put("webhook", {"n": 2})
    item = outbox.oldest("webhook")
    assert item is not None
    outbox.reject(item[0], "webhook", "answered 404")
    stats = outbox.stats("webhook")
    assert (stats["pending"], stats["failed"], stats["delivered"]) == (1, 1, 0)
    with sqlite3.connect(outbox.path) as db:
        rows = db.execute("SELECT id, channel, payload, error FROM failed").fetchall()
    assert rows == [(item[0], "webhook", json.dumps({"n": 1}), "answered 404")]
    rest = outbox.oldest("webhook")
    assert rest is not None and rest[1] == {"n": 2}


def test_outbox_reports_the_age_of_its_oldest_message(outbox: Outbox, monkeypatch: pytest.MonkeyPatch) -> None:
    now = [5000.0]
    monkeypatch.setattr(alerts, "time", types.SimpleNamespace(time=lambda: now[0]))
    assert outbox.stats("mqtt")["oldest_pending_s"] == 0.0
    outbox.put("mqtt", {"n": 1})
    now[0] = 5010.0
    outbox.put("mqtt", {"n": 2})
    now[0] = 5012.34
    assert outbox.stats("mqtt")["oldest_pending_s"] == 12.3


def test_outbox_survives_closing_and_reopening(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    box = Outbox(path, max_messages=10)
    for n in range(3):
        box.put("mqtt", {"n": n})
    first = box.oldest("mqtt")
    assert first is not None
    box.ack(first[0], "mqtt")
    box.close()
    again = Outbox(path, max_messages=10)
    try:
        stats = again.stats("mqtt")
        assert (stats["pending"], stats["delivered"]) == (2, 1)
        oldest = again.oldest("mqtt")
        assert oldest is not None and oldest[1] == {"n": 1}
        with sqlite3.connect(path) as db:
            assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        # Another writer (a second process on the same outbox) is waited for up to 30 s, not 5.
        assert again._db.execute("PRAGMA busy_timeout").fetchone() == (30000,)
    finally:
        again.close()


# --- the sender ------------------------------------------------------------------------------------


class RecordingEvent(threading.Event):
    """A threading.Event whose waits are recorded and last at most 10 ms; `fire_on` sets it just
    before the listed backoff waits (1-based, idle waits not counted), as a new alarm would."""

    FIRE_ON: ClassVar[frozenset[int]] = frozenset()

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float] = []
        self.fire_on = set(self.FIRE_ON)

    def wait(self, timeout: float | None = None) -> bool:
        assert timeout is not None
        self.waits.append(timeout)
        if len(self.backoffs) in self.fire_on and timeout != IDLE_S:
            self.set()
        return super().wait(min(timeout, 0.01))

    @property
    def backoffs(self) -> list[float]:
        return [w for w in self.waits if w != IDLE_S]


class ScriptedTransport:
    """Raises the scripted exceptions in turn (None: delivered), then delivers everything."""

    def __init__(self, *script: BaseException | None) -> None:
        self.script = list(script)
        self.delivered: list[dict[str, Any]] = []
        self.attempts = 0
        self.closed = False
        self.on_ready: Any = None

    def deliver(self, message: dict[str, Any]) -> None:
        self.attempts += 1
        outcome = self.script.pop(0) if self.script else None
        if outcome is not None:
            raise outcome
        self.delivered.append(message)

    def health(self) -> dict[str, Any]:
        return {"transport": "scripted", "connected": True}

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def recording(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sender's events are RecordingEvents (only edge.alerts sees the stand-in)."""
    monkeypatch.setattr(
        alerts,
        "threading",
        types.SimpleNamespace(Event=RecordingEvent, Thread=threading.Thread, Lock=threading.Lock),
    )


def channel_with(
    tmp_path: Path, transport: ScriptedTransport, *payloads: dict[str, Any], grace_s: float = 5.0
) -> tuple[AlertChannel, Outbox]:
    """A channel over an outbox that already holds `payloads` (so the first waits are backoffs)."""
    box = Outbox(tmp_path / "outbox.sqlite3", max_messages=100)
    for payload in payloads:
        box.put("mqtt", payload)
    return AlertChannel("mqtt", box, transport, CONFIG, close_grace_s=grace_s), box


def waits_of(channel: AlertChannel, name: str) -> RecordingEvent:
    event = getattr(channel, name)
    assert isinstance(event, RecordingEvent)
    return event


def test_backoff_doubles_to_its_cap_and_starts_over_after_a_delivery(tmp_path: Path, recording: None) -> None:
    failure = DeliveryError("broker down")
    transport = ScriptedTransport(failure, failure, failure, failure, None, failure, None)
    channel, box = channel_with(tmp_path, transport, {"n": 1}, {"n": 2})
    assert wait_until(lambda: len(transport.delivered) == 2, 10)
    channel.close()
    assert transport.delivered == [{"n": 1}, {"n": 2}] and transport.attempts == 7
    assert waits_of(channel, "_wake").backoffs == [0.05, 0.1, 0.2, 0.2, 0.05]
    assert waits_of(channel, "_stop").waits == []  # nobody asked for a Retry-After
    assert channel.last_error == "" and transport.closed
    assert box.stats("mqtt")["delivered"] == 2


def test_a_wake_during_backoff_starts_the_backoff_over(
    tmp_path: Path, recording: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    failure = DeliveryError("broker down")
    transport = ScriptedTransport(failure, failure, failure, failure)
    monkeypatch.setattr(RecordingEvent, "FIRE_ON", frozenset({2}))  # a new alarm during the second backoff
    channel, _ = channel_with(tmp_path, transport, {"n": 1})
    assert wait_until(lambda: transport.delivered == [{"n": 1}], 10)
    channel.close()
    assert waits_of(channel, "_wake").backoffs == [0.05, 0.1, 0.05, 0.1]


def test_a_retry_after_is_waited_out_and_capped_and_the_backoff_still_grows(tmp_path: Path, recording: None) -> None:
    transport = ScriptedTransport(
        DeliveryError("429", retry_after_s=0.5),
        DeliveryError("429", retry_after_s=7.0),
        DeliveryError("503", retry_after_s=RETRY_AFTER_MAX_S * 10),
        DeliveryError("down"),
        None,
    )
    box = Outbox(tmp_path / "outbox.sqlite3", max_messages=100)
    box.put("mqtt", {"n": 1})
    roomy = OutboxConfig(retry_initial_s=0.05, retry_max_s=5.0)
    channel = AlertChannel("mqtt", box, transport, roomy)
    assert wait_until(lambda: transport.delivered == [{"n": 1}], 10)
    channel.close()
    assert waits_of(channel, "_stop").waits == [0.5, 7.0, RETRY_AFTER_MAX_S]
    # Three receiver-set waits doubled the backoff three times (0.05 -> 0.4) before the plain failure.
    assert waits_of(channel, "_wake").backoffs == [0.4]
    with sqlite3.connect(box.path) as db:
        assert db.execute("SELECT COUNT(*) FROM messages").fetchone() == (0,)


def test_a_zero_retry_after_falls_back_to_the_backoff(tmp_path: Path, recording: None) -> None:
    transport = ScriptedTransport(DeliveryError("503", retry_after_s=0.0), None)
    channel, _ = channel_with(tmp_path, transport, {"n": 1})
    assert wait_until(lambda: transport.delivered == [{"n": 1}], 10)
    channel.close()
    assert waits_of(channel, "_stop").waits == [] and waits_of(channel, "_wake").backoffs == [0.05]


def test_a_permanent_refusal_moves_on_at_once_and_is_reported(
    tmp_path: Path, recording: None, caplog: pytest.LogCaptureFixture
) -> None:
    transport = ScriptedTransport(PermanentDeliveryError("webhook answered 404 Not Found"), None)
    channel, box = channel_with(tmp_path, transport, {"n": 1}, {"n": 2})
    with caplog.at_level(logging.ERROR, logger="scream"):
        assert wait_until(lambda: transport.delivered == [{"n": 2}], 10)
        assert channel.last_error == ""  # the next delivery succeeded
        channel.close()
    assert waits_of(channel, "_wake").backoffs == [] and waits_of(channel, "_stop").waits == []
    stats = box.stats("mqtt")
    assert (stats["failed"], stats["delivered"], stats["pending"]) == (1, 1, 0)
    assert "mqtt refused an alert for good: webhook answered 404 Not Found" in caplog.text


@pytest.mark.parametrize(
    ("error", "reported"),
    [
        (DeliveryError("broker down"), "broker down"),
        (OSError("network unreachable"), "network unreachable"),
        (KeyError("peak_score"), "KeyError: 'peak_score'"),
    ],
)
def test_every_other_failure_is_kept_and_retried(
    tmp_path: Path, recording: None, error: Exception, reported: str, caplog: pytest.LogCaptureFixture
) -> None:
    never = ScriptedTransport(*[error] * 10_000)
    channel, box = channel_with(tmp_path, never, {"n": 1}, grace_s=0.0)
    with caplog.at_level(logging.ERROR, logger="scream"):
        assert wait_until(lambda: never.attempts >= 3, 10)
        assert channel.last_error == reported
        health = channel.health()
        channel.close()
    assert health["delivering"] is True and health["last_delivery_error"] == reported
    assert box.stats("mqtt")["pending"] == 1
    item = box.oldest("mqtt")
    assert item is not None and item[2] >= 3
    unexpected = [r.getMessage() for r in caplog.records]
    # Expected failures are not logged as bugs; an unexpected one is, once per attempt.
    assert set(unexpected) == (
        {"mqtt delivery failed unexpectedly; retrying"} if isinstance(error, KeyError) else set()
    )
    # None of them carries a Retry-After: the sender backs off by itself.
    assert waits_of(channel, "_stop").waits == [] and waits_of(channel, "_wake").backoffs[:3] == [0.05, 0.1, 0.2]


def test_handle_queues_only_alarms_meant_for_this_channel(tmp_path: Path, recording: None) -> None:
    transport = ScriptedTransport(*[DeliveryError("held")] * 10_000)  # keep everything in the outbox
    channel, box = channel_with(tmp_path, transport, grace_s=0.0)
    channel.handle(AlarmMessage("start", EVENT, frozenset({"mqtt", "led"})))
    channel.handle(AlarmMessage("end", EVENT, frozenset({"webhook"})))
    channel.handle(ClipMessage(EVENT, np.zeros(4, np.float32), 16000, frozenset({"mqtt"})))
    channel.close()
    item = box.oldest("mqtt")
    assert box.stats("mqtt")["pending"] == 1
    assert item is not None and item[1] == {"kind": "start", "event": EVENT}


def test_health_joins_outbox_transport_and_sender(tmp_path: Path) -> None:
    transport = ScriptedTransport()
    channel, _ = channel_with(tmp_path, transport, {"n": 1})
    assert wait_until(lambda: channel.health()["delivered"] == 1, 10)
    health = channel.health()
    assert health == {
        "pending": 0,
        "oldest_pending_s": 0.0,
        "delivered": 1,
        "dropped": 0,
        "failed": 0,
        "transport": "scripted",
        "connected": True,
        "last_delivery_error": "",
        "delivering": True,
        "alert_after_s": 42.0,
    }
    channel.close()
    assert channel.health()["delivering"] is False  # the outbox is its owner's to close


def test_close_gives_pending_alerts_their_grace_then_leaves_them(tmp_path: Path) -> None:
    slow = ScriptedTransport(DeliveryError("down"), DeliveryError("down"), None)
    channel, box = channel_with(tmp_path / "a", slow, {"n": 1}, grace_s=5.0)
    channel.close()  # inside the grace the sender is woken, not left in its backoff
    assert slow.delivered == [{"n": 1}] and slow.closed and box.stats("mqtt")["pending"] == 0
    assert not channel._thread.is_alive()

    stuck = ScriptedTransport(*[DeliveryError("down")] * 10_000)
    channel, box = channel_with(tmp_path / "b", stuck, {"n": 1}, {"n": 2}, grace_s=0.2)
    started = time.monotonic()
    channel.close()
    assert 0.2 <= time.monotonic() - started < 0.9  # the grace, looked at every 50 ms
    assert stuck.closed and not channel._thread.is_alive()
    assert box.stats("mqtt")["pending"] == 2  # what could not go out waits for the next start


def test_close_without_grace_does_not_wait_for_pending_alerts(tmp_path: Path) -> None:
    stuck = ScriptedTransport(*[DeliveryError("down")] * 10_000)
    channel, box = channel_with(tmp_path, stuck, {"n": 1}, grace_s=0.0)
    started = time.monotonic()
    channel.close()
    assert time.monotonic() - started < 2.0 and box.stats("mqtt")["pending"] == 1


class RecordingThread(threading.Thread):
    """A thread whose joins are recorded and cut to half a second (a join bound is read, not waited)."""

    joins: ClassVar[list[float | None]] = []

    def join(self, timeout: float | None = None) -> None:
        RecordingThread.joins.append(timeout)
        super().join(0.5 if timeout is None else min(timeout, 0.5))


class HungTransport(ScriptedTransport):
    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def deliver(self, message: dict[str, Any]) -> None:
        self.release.wait(30)  # a network call that never returns
        raise DeliveryError("hung")


def test_close_waits_at_most_ten_seconds_for_a_hung_sender_then_closes_the_transport(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        alerts, "threading", types.SimpleNamespace(Event=threading.Event, Thread=RecordingThread, Lock=threading.Lock)
    )
    RecordingThread.joins = []
    hung = HungTransport()
    channel, box = channel_with(tmp_path, hung, {"n": 1}, grace_s=0.0)
    try:
        channel.close()
        assert RecordingThread.joins == [10] and hung.closed
        assert box.stats("mqtt")["pending"] == 1
    finally:
        hung.release.set()


def test_pending_alerts_get_five_seconds_at_close_by_default(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox.sqlite3", max_messages=10)
    channel = AlertChannel("mqtt", box, ScriptedTransport(), CONFIG)
    try:
        assert channel.close_grace_s == 5.0
    finally:
        channel.close()
        box.close()


# --- the webhook -----------------------------------------------------------------------------------


class Receiver(http.server.BaseHTTPRequestHandler):
    """Answers each POST with the next scripted (status, headers); records what it was sent."""

    script: ClassVar[list[tuple[int, dict[str, str]]]] = []
    received: ClassVar[list[tuple[dict[str, str], bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((dict(self.headers), body))
        status, headers = type(self).script.pop(0) if type(self).script else (200, {})
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def receiver() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()
    server.server_close()


def answer(status: int, headers: dict[str, str] | None = None) -> None:
    Receiver.script[:] = [(status, headers or {})]
    Receiver.received.clear()


def test_the_body_is_the_event_with_its_kind_and_the_signature_an_hmac_sha256_of_it() -> None:
    body, headers = WebhookTransport(WebhookConfig(url="http://x/", secret="s3cret")).body_and_headers(
        {"kind": "end", "event": EVENT}
    )
    assert json.loads(body) == {"type": "event_end", **EVENT}
    assert body == json.dumps(json.loads(body), sort_keys=True).encode()  # keys sorted: a stable signature
    expected = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()  # the documented header format
    assert headers["X-Scream-Signature"] == f"sha256={expected}"
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"] == f"scream-detector/{alerts.__version__}"
    _, unsigned = WebhookTransport(WebhookConfig(url="http://x/")).body_and_headers({"kind": "start", "event": EVENT})
    assert "X-Scream-Signature" not in unsigned


def test_verify_signature_accepts_only_the_body_and_secret_it_was_made_with() -> None:
    body = b'{"id": "ev1"}'
    good = "sha256=" + hmac.new(b"k", body, hashlib.sha256).hexdigest()
    assert verify_signature("k", body, good)
    assert not verify_signature("k2", body, good)
    assert not verify_signature("k", body + b" ", good)
    assert not verify_signature("k", body, good.removeprefix("sha256="))
    assert not verify_signature("k", body, "sha1=" + hmac.new(b"k", body, hashlib.sha1).hexdigest())


def test_a_2xx_answer_delivers_the_signed_body(receiver: str) -> None:
    answer(204)
    WebhookTransport(WebhookConfig(url=receiver, secret="k")).deliver({"kind": "start", "event": EVENT})
    ((headers, body),) = Receiver.received
    assert json.loads(body)["type"] == "event_start"
    assert verify_signature("k", body, headers["X-Scream-Signature"])


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 413, 422, 499])
def test_a_4xx_refusal_is_permanent(receiver: str, status: int) -> None:
    answer(status)
    with pytest.raises(PermanentDeliveryError, match=f"webhook {receiver} answered {status} "):
        WebhookTransport(WebhookConfig(url=receiver)).deliver({"kind": "start", "event": EVENT})


@pytest.mark.parametrize("status", [408, 425, 429, 500, 502, 503, 599])
def test_timeouts_throttling_and_5xx_are_retried(receiver: str, status: int) -> None:
    answer(status)
    with pytest.raises(DeliveryError) as caught:
        WebhookTransport(WebhookConfig(url=receiver)).deliver({"kind": "start", "event": EVENT})
    assert not isinstance(caught.value, PermanentDeliveryError)
    assert caught.value.retry_after_s == 0.0
    reply = caught.value.__cause__
    assert isinstance(reply, alerts.urllib.error.HTTPError)
    assert str(caught.value) == f"webhook {receiver} answered {status} {reply.reason}"


def test_a_retry_after_header_is_passed_on_to_the_sender(receiver: str) -> None:
    answer(429, {"Retry-After": "120"})
    with pytest.raises(DeliveryError, match=r"answered 429 Too Many Requests \(retry after 120 s\)") as caught:
        WebhookTransport(WebhookConfig(url=receiver)).deliver({"kind": "start", "event": EVENT})
    assert caught.value.retry_after_s == 120.0


def test_an_unreachable_or_silent_webhook_is_retried(tmp_path: Path) -> None:
    port = free_port()
    with pytest.raises(DeliveryError, match=f"webhook http://127.0.0.1:{port}/ unreachable"):
        WebhookTransport(WebhookConfig(url=f"http://127.0.0.1:{port}/")).deliver({"kind": "start", "event": EVENT})
    with socket.socket() as silent:  # accepts, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/"
        started = time.monotonic()
        with pytest.raises(DeliveryError, match="unreachable: timed out") as caught:
            WebhookTransport(WebhookConfig(url=url, timeout_s=0.2)).deliver({"kind": "start", "event": EVENT})
        assert time.monotonic() - started < 3.0 and not isinstance(caught.value, PermanentDeliveryError)


def test_a_reply_that_is_not_http_is_retried() -> None:
    with socket.socket() as liar:
        liar.bind(("127.0.0.1", 0))
        liar.listen()

        def reply() -> None:
            connection, _ = liar.accept()
            with connection:
                connection.recv(65536)
                connection.sendall(b"SMTP ready\r\n\r\n")

        thread = threading.Thread(target=reply, daemon=True)
        thread.start()
        url = f"http://127.0.0.1:{liar.getsockname()[1]}/"
        with pytest.raises(DeliveryError, match="malformed reply: BadStatusLine") as caught:
            WebhookTransport(WebhookConfig(url=url, timeout_s=5)).deliver({"kind": "start", "event": EVENT})
        thread.join(5)
    assert not isinstance(caught.value, PermanentDeliveryError)


def test_retry_after_reads_seconds_and_http_dates(monkeypatch: pytest.MonkeyPatch) -> None:
    now = 1_800_000_000.0
    monkeypatch.setattr(alerts, "time", types.SimpleNamespace(time=lambda: now))
    assert _retry_after_s("") == 0.0 and _retry_after_s("   ") == 0.0
    assert _retry_after_s("120") == 120.0 and _retry_after_s(" 7 ") == 7.0 and _retry_after_s("0") == 0.0
    assert _retry_after_s(email.utils.formatdate(now + 30, usegmt=True)) == 30.0
    assert _retry_after_s(email.utils.formatdate(now - 30, usegmt=True)) == 0.0  # already past
    assert _retry_after_s("soon") == 0.0 and _retry_after_s("-5") == 0.0 and _retry_after_s("1.5") == 0.0


# --- MQTT, against a stand-in paho client ----------------------------------------------------------


class Published:
    def __init__(self, acked: bool = True, error: Exception | None = None) -> None:
        self.acked = acked
        self.error = error
        self.waited: list[float] = []

    def wait_for_publish(self, timeout: float | None = None) -> None:
        self.waited.append(timeout if timeout is not None else -1.0)
        if self.error is not None:
            raise self.error

    def is_published(self) -> bool:
        return self.acked


class FakePaho:
    """Records what MqttTransport asks of paho's Client; `next_publish` scripts the next answer."""

    def __init__(self, api: Any, client_id: str = "") -> None:
        self.api, self.client_id = api, client_id
        self.calls: list[tuple[Any, ...]] = []
        self.published: list[tuple[str, str, int, bool]] = []
        self.answers: list[Published] = []

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name in ("on_connect", "on_disconnect"):
            raise AttributeError(name)
        return lambda *args, **kwargs: self.calls.append((name, args, kwargs))

    def publish(self, topic: str, payload: str, qos: int = 0, retain: bool = False) -> Published:
        self.published.append((topic, payload, qos, retain))
        return self.answers.pop(0) if self.answers else Published()


@pytest.fixture
def paho(monkeypatch: pytest.MonkeyPatch) -> type[FakePaho]:
    client = pytest.importorskip("paho.mqtt.client")
    monkeypatch.setattr(client, "Client", FakePaho)
    return FakePaho


class Reason:
    def __init__(self, failure: bool) -> None:
        self.is_failure = failure

    def __str__(self) -> str:
        return "Not authorized"


def test_the_mqtt_client_is_set_up_from_the_config(paho: type[FakePaho]) -> None:
    config = MqttConfig(
        enabled=True,
        host="broker.lan",
        port=8883,
        username="u",
        password="",
        tls=True,
        ca_file="/ca.pem",
        keepalive_s=17,
    )
    transport = alerts.MqttTransport(config, SITE)
    client = transport.client
    assert isinstance(client, FakePaho) and client.client_id == "scream-car_park_b"
    assert transport.topics == {n: f"scream/car_park_b/{n}" for n in ("availability", "state", "score", "event")}
    calls = {name: (args, kwargs) for name, args, kwargs in client.calls}
    assert calls["username_pw_set"] == (("u", None), {})  # an empty password is none at all
    assert calls["tls_set"] == ((), {"ca_certs": "/ca.pem"})
    assert calls["will_set"] == (("scream/car_park_b/availability", "offline"), {"qos": 1, "retain": True})
    assert calls["reconnect_delay_set"] == ((1, 5), {})
    assert calls["connect_async"] == (("broker.lan", 8883), {"keepalive": 17})
    assert "loop_start" in calls
    assert client.on_connect == transport._on_connect and client.on_disconnect == transport._on_disconnect

    plain = alerts.MqttTransport(MqttConfig(enabled=True, client_id="me", tls=False, password="p"), SITE)
    names = [name for name, _, _ in plain.client.calls]
    assert plain.client.client_id == "me" and "username_pw_set" not in names and "tls_set" not in names
    system_ca = alerts.MqttTransport(MqttConfig(enabled=True, tls=True, username="u", password="p"), SITE)
    calls = {name: (args, kwargs) for name, args, kwargs in system_ca.client.calls}
    assert calls["tls_set"] == ((), {"ca_certs": None}) and calls["username_pw_set"] == (("u", "p"), {})


def test_on_connect_announces_availability_and_discovery_then_wakes_the_sender(paho: type[FakePaho]) -> None:
    transport = alerts.MqttTransport(MqttConfig(enabled=True), SITE)
    woken: list[bool] = []
    transport.on_ready = lambda: woken.append(True)
    client = transport.client
    transport._on_connect(client, None, None, Reason(failure=True))
    assert client.published == [] and not transport.connected.is_set() and woken == []
    transport._on_connect(client, None, None, Reason(failure=False))
    assert client.published[0] == ("scream/car_park_b/availability", "online", 1, True)
    assert client.published[1:] == [
        (topic, json.dumps(payload, sort_keys=True), 1, True) for topic, payload in transport.discovery.items()
    ]
    assert len(client.published) == 3 and transport.connected.is_set() and woken == [True]
    assert transport.health() == {"connected": True, "broker": "localhost:1883"}
    transport._on_disconnect(client, None, None, Reason(failure=False))
    assert not transport.connected.is_set() and transport.health()["connected"] is False

    quiet = alerts.MqttTransport(MqttConfig(enabled=True, discovery=False), SITE)
    quiet._on_connect(quiet.client, None, None, Reason(failure=False))  # no sender attached: no call
    assert quiet.client.published == [("scream/car_park_b/availability", "online", 1, True)]


def test_mqtt_delivery_publishes_state_event_and_score_and_waits_for_each_ack(paho: type[FakePaho]) -> None:
    transport = alerts.MqttTransport(MqttConfig(enabled=True, publish_timeout_s=3.5), SITE)
    client = transport.client
    with pytest.raises(DeliveryError, match="not connected to MQTT broker localhost:1883"):
        transport.deliver({"kind": "start", "event": EVENT})
    assert client.published == []
    transport.connected.set()
    answers = [Published() for _ in range(4)]
    client.answers = list(answers)
    transport.deliver({"kind": "start", "event": EVENT})
    transport.deliver({"kind": "end", "event": EVENT})
    assert client.published == [
        ("scream/car_park_b/state", "ON", 1, True),
        ("scream/car_park_b/event", json.dumps(EVENT, sort_keys=True), 1, False),
        ("scream/car_park_b/score", "0.9000", 1, True),
        ("scream/car_park_b/state", "OFF", 1, True),
    ]
    assert [a.waited for a in answers] == [[3.5]] * 4


@pytest.mark.parametrize(
    ("answer_", "message"),
    [
        (Published(error=RuntimeError("queue full")), "MQTT publish to scream/car_park_b/event failed: queue full"),
        (Published(error=ValueError("bad")), "MQTT publish to scream/car_park_b/event failed: bad"),
        (Published(acked=False), "MQTT broker did not acknowledge scream/car_park_b/event within 2.0 s"),
    ],
)
def test_an_unacknowledged_mqtt_publish_fails_the_delivery(
    paho: type[FakePaho], answer_: Published, message: str
) -> None:
    transport = alerts.MqttTransport(MqttConfig(enabled=True, publish_timeout_s=2.0), SITE)
    transport.connected.set()
    transport.client.answers = [answer_]
    with pytest.raises(DeliveryError) as caught:
        transport.deliver({"kind": "end", "event": EVENT})
    assert str(caught.value) == message
    assert len(transport.client.published) == 1  # nothing after the unacknowledged publish


def test_mqtt_close_says_offline_only_when_connected(paho: type[FakePaho]) -> None:
    transport = alerts.MqttTransport(MqttConfig(enabled=True), SITE)
    transport.connected.set()
    offline = Published()
    transport.client.answers = [offline]
    transport.close()
    assert transport.client.published == [("scream/car_park_b/availability", "offline", 1, True)]
    assert offline.waited == [2.0]
    assert [n for n, _, _ in transport.client.calls][-2:] == ["disconnect", "loop_stop"]
    gone = alerts.MqttTransport(MqttConfig(enabled=True), SITE)
    gone.close()
    assert gone.client.published == [] and [n for n, _, _ in gone.client.calls][-2:] == ["disconnect", "loop_stop"]


def test_node_ids_are_topic_safe() -> None:
    assert node_id(SITE) == "car_park_b"
    assert node_id(SiteConfig(name="  Ward 3 / Bed-12 ")) == "ward_3_bed_12"
    assert node_id(SiteConfig(name="__Ä__")) == "scream_detector" and node_id(SiteConfig(name="x__y")) == "x__y"


def test_home_assistant_discovery_describes_both_entities() -> None:
    topics = {n: f"t/{n}" for n in ("availability", "state", "score", "event")}
    found = discovery_messages(MqttConfig(discovery_prefix="ha"), SITE, "node", topics)
    device = {
        "identifiers": ["scream_detector_node"],
        "name": "Car Park B",
        "manufacturer": "scream-detector",
        "model": "edge scream detector",
        "sw_version": alerts.__version__,
        "suggested_area": "Level -1",
    }
    availability = {
        "availability_topic": "t/availability",
        "payload_available": "online",
        "payload_not_available": "offline",
    }
    assert found == {
        "ha/binary_sensor/node/scream/config": {
            "name": "Scream",
            "unique_id": "node_scream",
            "object_id": "node_scream",
            "state_topic": "t/state",
            "payload_on": "ON",
            "payload_off": "OFF",
            "device_class": "sound",
            "json_attributes_topic": "t/event",
            "device": device,
            **availability,
        },
        "ha/sensor/node/last_score/config": {
            "name": "Last scream score",
            "unique_id": "node_last_score",
            "object_id": "node_last_score",
            "state_topic": "t/score",
            "state_class": "measurement",
            "icon": "mdi:account-voice",
            "device": device,
            **availability,
        },
    }
    nowhere = discovery_messages(MqttConfig(), SiteConfig(name="n"), "n", topics)
    assert sorted(nowhere) == [
        "homeassistant/binary_sensor/n/scream/config",
        "homeassistant/sensor/n/last_score/config",
    ]
    assert [entity["device"].get("suggested_area", "-") for entity in nowhere.values()] == ["-", "-"]


# --- what the first round of mutants showed untested -----------------------------------------------


def test_an_idle_sender_polls_the_outbox_and_a_new_alarm_wakes_it(tmp_path: Path, recording: None) -> None:
    """Idle, the sender looks at the outbox every second (another process may have written it) and
    goes on after each look; a handled alarm wakes it at once."""
    transport = ScriptedTransport()
    channel, box = channel_with(tmp_path, transport)
    assert channel.health()["last_delivery_error"] == ""
    assert wait_until(lambda: waits_of(channel, "_wake").waits.count(IDLE_S) >= 2, 10)
    box.put("mqtt", {"n": 1})  # behind the sender's back: found by the next look
    assert wait_until(lambda: transport.delivered == [{"n": 1}], 10)
    channel.handle(AlarmMessage("start", EVENT, frozenset({"mqtt"})))
    assert wait_until(lambda: len(transport.delivered) == 2, 10)
    assert channel._thread.name == "deliver-mqtt" and channel._thread.daemon  # never holds up an exit
    channel.close()


def test_a_transport_that_can_tell_it_is_back_wakes_the_sender(tmp_path: Path) -> None:
    transport = ScriptedTransport()
    channel, _ = channel_with(tmp_path, transport)
    assert transport.on_ready is not None
    channel._wake.clear()
    transport.on_ready()
    assert channel._wake.is_set()
    channel.close()


def test_a_refusal_for_good_is_kept_with_its_reason(
    tmp_path: Path, recording: None, caplog: pytest.LogCaptureFixture
) -> None:
    transport = ScriptedTransport(PermanentDeliveryError("webhook answered 410 Gone"))
    channel, box = channel_with(tmp_path, transport, {"n": 1})
    with caplog.at_level(logging.ERROR, logger="scream"):
        assert wait_until(lambda: box.stats("mqtt")["failed"] == 1, 10)
        channel.close()
    assert channel.last_error == "webhook answered 410 Gone"
    with sqlite3.connect(box.path) as db:
        assert db.execute("SELECT error FROM failed").fetchall() == [("webhook answered 410 Gone",)]
    assert [r.getMessage() for r in caplog.records] == ["mqtt refused an alert for good: webhook answered 410 Gone"]


def test_missing_paho_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "paho.mqtt.client", None)
    with pytest.raises(alerts.ExtraMissingError) as caught:
        alerts.MqttTransport(MqttConfig(enabled=True), SITE)
    assert str(caught.value) == (
        "MQTT alerts needs the Python module 'paho.mqtt', which is not installed: pip install 'scream-detector[alerts]'"
    )


def test_the_transport_uses_paho_v2_callbacks_and_its_own_discovery(paho: type[FakePaho]) -> None:
    from paho.mqtt.enums import CallbackAPIVersion

    config = MqttConfig(enabled=True)
    transport = alerts.MqttTransport(config, SITE)
    assert transport.client.api == CallbackAPIVersion.VERSION2
    assert transport.discovery == discovery_messages(config, SITE, "car_park_b", transport.topics)


def test_a_refused_connection_is_logged_and_a_reason_without_is_failure_is_success(
    paho: type[FakePaho], caplog: pytest.LogCaptureFixture
) -> None:
    transport = alerts.MqttTransport(MqttConfig(enabled=True, discovery=False), SITE)
    with caplog.at_level(logging.WARNING, logger="scream"):
        transport._on_connect(transport.client, None, None, Reason(failure=True))
    assert [r.getMessage() for r in caplog.records] == ["MQTT broker refused the connection: Not authorized"]
    transport._on_connect(transport.client, None, None, 0)  # paho's older integer reason code: 0 is success
    assert transport.connected.is_set() and len(transport.client.published) == 1


def test_webhook_health_names_its_url() -> None:
    assert WebhookTransport(WebhookConfig(url="https://example.invalid/h")).health() == {
        "url": "https://example.invalid/h"
    }
