"""Remote alerts against a real mosquitto on 127.0.0.1 and a local HTTP server."""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from edge.alerts import AlertChannel, MqttTransport, Outbox, WebhookTransport, verify_signature
from edge.config import MqttConfig, OutboxConfig, SiteConfig, WebhookConfig
from edge.sinks import AlarmMessage
from tests.helpers import free_port, require_program, wait_until

mqtt = pytest.importorskip("paho.mqtt.client")
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

ALL = frozenset({"mqtt", "webhook"})
FAST = OutboxConfig(retry_initial_s=0.05, retry_max_s=0.5)
SITE = SiteConfig(name="Car Park B", location="Level -1")
HA_BINARY_SENSOR_CLASSES = {
    "battery",
    "cold",
    "connectivity",
    "door",
    "gas",
    "heat",
    "moisture",
    "motion",
    "occupancy",
    "opening",
    "presence",
    "problem",
    "safety",
    "smoke",
    "sound",
    "vibration",
}


class Broker:
    """A real mosquitto on 127.0.0.1 that a test can stop and start again on the same port."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.conf = tmp / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {tmp}/\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["mosquitto", "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    require_program("mosquitto")
    b = Broker(tmp_path)
    b.start()
    yield b
    b.stop()


class Subscriber:
    def __init__(self, port: int, topic: str = "#") -> None:
        self.messages: list[tuple[str, str, bool]] = []
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"test-{port}-{time.monotonic_ns()}", clean_session=False
        )
        self.client.on_message = lambda c, u, m: self.messages.append((m.topic, m.payload.decode(), m.retain))
        self.client.on_connect = lambda c, u, f, r, p=None: c.subscribe(topic, qos=1)
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def wait_for(self, predicate: Any, timeout_s: float = 20.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if predicate(self.messages):
                return True
            time.sleep(0.05)
        return False

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def event(n: int) -> dict[str, Any]:
    return {
        "id": f"ev{n:04d}",
        "number": n,
        "site": SITE.name,
        "location": SITE.location,
        "start": 1000.0 + n,
        "end": 1001.5 + n,
        "peak_score": 0.9,
        "model_sha256": "ab" * 32,
        "clip": f"c{n}.wav",
    }


def events_on(messages: list[tuple[str, str, bool]]) -> list[str]:
    """Event ids in arrival order, first occurrence only (QoS 1 is at least once)."""
    seen: list[str] = []
    for topic, payload, _ in messages:
        if topic.endswith("/event"):
            eid = json.loads(payload)["id"]
            if eid not in seen:
                seen.append(eid)
    return seen


def mqtt_channel(tmp_path: Path, port: int, outbox: Outbox | None = None) -> AlertChannel:
    config = MqttConfig(enabled=True, host="127.0.0.1", port=port, publish_timeout_s=2.0)
    outbox = outbox or Outbox(tmp_path / "outbox.sqlite3", max_messages=1000)
    return AlertChannel("mqtt", outbox, MqttTransport(config, SITE), FAST)


def test_events_and_discovery_arrive(broker: Broker, tmp_path: Path) -> None:
    sub = Subscriber(broker.port)
    channel = mqtt_channel(tmp_path, broker.port)
    channel.handle(AlarmMessage("start", event(1), ALL))
    channel.handle(AlarmMessage("end", event(1), ALL))
    assert sub.wait_for(lambda m: events_on(m) == ["ev0001"])
    assert sub.wait_for(lambda m: ("scream/car_park_b/state", "OFF", False) in m)
    channel.close()
    sub.close()
    topics = {t: p for t, p, _ in sub.messages}
    payload = json.loads(topics["scream/car_park_b/event"])
    assert payload == event(1)  # id, site, location, start, end, peak score, model sha256, clip
    states = [p for t, p, _ in sub.messages if t == "scream/car_park_b/state"]
    assert states == ["ON", "OFF"]
    assert topics["scream/car_park_b/score"] == "0.9000"
    assert topics["scream/car_park_b/availability"] == "offline"  # clean close publishes offline

    # A late subscriber sees the retained state, availability and discovery configs.
    late = Subscriber(broker.port)
    assert late.wait_for(lambda m: sum(1 for _, _, retained in m if retained) >= 5)
    late.close()
    retained = {t: p for t, p, r in late.messages if r}
    configs = {t: json.loads(p) for t, p in retained.items() if t.startswith("homeassistant/")}
    assert set(configs) == {
        "homeassistant/binary_sensor/car_park_b/scream/config",
        "homeassistant/sensor/car_park_b/last_score/config",
    }
    unique_ids = [c["unique_id"] for c in configs.values()]
    assert len(set(unique_ids)) == 2
    for config in configs.values():
        assert config["state_topic"] in retained  # the entity's state is there for Home Assistant
        assert config["availability_topic"] == "scream/car_park_b/availability"
        assert config["device"]["identifiers"] == ["scream_detector_car_park_b"] and config["device"]["name"]
    binary = configs["homeassistant/binary_sensor/car_park_b/scream/config"]
    assert binary["device_class"] in HA_BINARY_SENSOR_CLASSES
    assert {binary["payload_on"], binary["payload_off"]} == {"ON", "OFF"}
    assert configs["homeassistant/sensor/car_park_b/last_score/config"]["state_class"] == "measurement"


def test_broker_outage_loses_nothing_and_keeps_order(broker: Broker, tmp_path: Path) -> None:
    sub = Subscriber(broker.port)
    channel = mqtt_channel(tmp_path, broker.port)
    for n in range(5):
        channel.handle(AlarmMessage("end", event(n), ALL))
    assert sub.wait_for(lambda m: len(events_on(m)) == 5)
    broker.stop()
    for n in range(5, 15):  # the broker is down: these wait in the outbox
        channel.handle(AlarmMessage("end", event(n), ALL))
    time.sleep(0.5)
    assert channel.outbox.stats("mqtt")["pending"] >= 9
    assert channel.health()["connected"] is False
    broker.start()
    assert sub.wait_for(lambda m: len(events_on(m)) == 15, timeout_s=40), events_on(sub.messages)
    assert events_on(sub.messages) == [f"ev{n:04d}" for n in range(15)]
    # The subscriber can hear the last message before the broker's PUBACK reaches the channel
    # and clears it from the outbox: wait for the acknowledgement rather than race it.
    assert wait_until(lambda: channel.outbox.stats("mqtt")["pending"] == 0, timeout_s=20)
    channel.close()
    sub.close()


def test_outbox_survives_a_service_restart(broker: Broker, tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    broker.stop()
    first = mqtt_channel(tmp_path, broker.port, Outbox(path, max_messages=1000))
    for n in range(4):
        first.handle(AlarmMessage("end", event(n), ALL))
    first.close_grace_s = 0.2
    first.close()  # the service stops with four alerts undelivered
    first.outbox.close()
    broker.start()
    sub = Subscriber(broker.port)
    second = mqtt_channel(tmp_path, broker.port, Outbox(path, max_messages=1000))
    assert sub.wait_for(lambda m: len(events_on(m)) == 4)
    assert events_on(sub.messages) == ["ev0000", "ev0001", "ev0002", "ev0003"]
    second.close()
    sub.close()


def test_outbox_bound_drops_oldest_and_counts(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.sqlite3", max_messages=10)
    for n in range(25):
        outbox.put("webhook", {"n": n})
    stats = outbox.stats("webhook")
    assert stats["pending"] == 10 and stats["dropped"] == 15
    oldest = outbox.oldest("webhook")
    assert oldest is not None and oldest[1] == {"n": 15}


class Receiver(http.server.BaseHTTPRequestHandler):
    script: ClassVar[list[str]] = []
    received: ClassVar[list[tuple[bytes, dict[str, str]]]] = []
    times: ClassVar[list[float]] = []  # monotonic time of each request

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        action = Receiver.script.pop(0) if Receiver.script else "200"
        # Recorded on arrival: a "sleep" request outlives the client's timeout, and the retries that
        # follow it may be answered before it wakes.
        Receiver.received.append((body, dict(self.headers)))
        Receiver.times.append(time.monotonic())
        if action == "sleep":
            time.sleep(1.0)
            action = "200"
        if ":" in action:  # "429:2": that status with "Retry-After: 2"
            code, after = action.split(":")
            self.send_response(int(code))
            self.send_header("Retry-After", after)
            self.end_headers()
            return
        if action in ("garbage", "short"):  # a reply that is not HTTP, or one cut short of its length
            if action == "garbage":
                self.wfile.write(b"THIS IS NOT HTTP\r\n\r\n")
            else:
                self.send_response(200)
                self.send_header("Content-Length", "100")
                self.end_headers()
                self.wfile.write(b"cut")
            self.close_connection = True
            return
        self.send_response(int(action))
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[str]:
    Receiver.script, Receiver.received, Receiver.times = [], [], []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()


def test_webhook_retries_500_and_timeouts_and_signs(http_server: str, tmp_path: Path) -> None:
    Receiver.script = ["500", "sleep", "503", "200"]
    config = WebhookConfig(enabled=True, url=http_server, secret="s3cret", timeout_s=0.5)
    channel = AlertChannel("webhook", Outbox(tmp_path / "o.sqlite3", max_messages=100), WebhookTransport(config), FAST)
    channel.handle(AlarmMessage("end", event(7), ALL))
    channel.handle(AlarmMessage("end", event(8), ALL))
    assert wait_until(lambda: channel.outbox.stats("webhook")["delivered"] == 2, timeout_s=15.0)
    bodies = [json.loads(b) for b, _ in Receiver.received]
    assert [b["id"] for b in bodies][-2:] == ["ev0007", "ev0008"]
    assert sum(b["id"] == "ev0007" for b in bodies) >= 3  # 500, timeout, 503, then 200
    body, headers = Receiver.received[-1]
    # The documented header, computed here independently: sha256=<hex HMAC-SHA256 of the body>.
    assert headers["X-Scream-Signature"] == "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert verify_signature("s3cret", body, headers["X-Scream-Signature"])
    assert not verify_signature("wrong", body, headers["X-Scream-Signature"])
    assert json.loads(body)["type"] == "event_end"
    channel.close()


def test_a_malformed_reply_is_retried_and_the_sender_lives_on(http_server: str, tmp_path: Path) -> None:
    Receiver.script = ["garbage", "short", "200", "200"]
    config = WebhookConfig(enabled=True, url=http_server, timeout_s=2)
    channel = AlertChannel("webhook", Outbox(tmp_path / "o.sqlite3", max_messages=100), WebhookTransport(config), FAST)
    channel.handle(AlarmMessage("end", event(1), ALL))
    channel.handle(AlarmMessage("end", event(2), ALL))
    assert wait_until(lambda: channel.outbox.stats("webhook")["delivered"] == 2, timeout_s=15.0)
    assert [json.loads(b)["id"] for b, _ in Receiver.received] == ["ev0001", "ev0001", "ev0001", "ev0002"]
    assert channel.health()["delivering"] is True
    channel.close()


def test_a_new_alarm_cuts_the_backoff_short(http_server: str, tmp_path: Path) -> None:
    """After a failure the sender waits (30 s here); an alarm raised meanwhile goes out at once."""
    Receiver.script = ["500"]
    slow = OutboxConfig(retry_initial_s=30.0, retry_max_s=60.0)
    config = WebhookConfig(enabled=True, url=http_server, timeout_s=2)
    channel = AlertChannel("webhook", Outbox(tmp_path / "o.sqlite3", max_messages=100), WebhookTransport(config), slow)
    channel.handle(AlarmMessage("end", event(1), ALL))
    assert wait_until(lambda: len(Receiver.received) == 1 and channel.health()["last_delivery_error"], timeout_s=10.0)
    time.sleep(0.3)
    raised = time.monotonic()
    channel.handle(AlarmMessage("start", event(2), ALL))
    assert wait_until(lambda: channel.outbox.stats("webhook")["delivered"] == 2, timeout_s=10.0)
    assert time.monotonic() - raised < 3.0  # not held behind the 30 s backoff
    channel.close()


def test_a_returning_broker_drains_the_queue_at_once(tmp_path: Path) -> None:
    """Alarms queued while the broker is down go out within seconds of its return, not after the
    sender's backoff (30 s here): the reconnect wakes the sender."""
    require_program("mosquitto")
    broker = Broker(tmp_path)
    slow = OutboxConfig(retry_initial_s=30.0, retry_max_s=60.0)
    transport = MqttTransport(MqttConfig(enabled=True, host="127.0.0.1", port=broker.port), SITE)
    channel = AlertChannel("mqtt", Outbox(tmp_path / "o.sqlite3", max_messages=100), transport, slow)
    try:
        for n in range(3):
            channel.handle(AlarmMessage("end", event(n), ALL))
        assert wait_until(lambda: "not connected" in channel.health()["last_delivery_error"], timeout_s=10.0)
        broker.start()
        back = time.monotonic()
        assert wait_until(lambda: channel.outbox.stats("mqtt")["delivered"] == 3, timeout_s=20.0)
        assert time.monotonic() - back < 8.0  # paho retries every 1-5 s; then the queue drains at once
    finally:
        channel.close_grace_s = 0.0
        channel.close()
        broker.stop()


def test_status_reports_an_alert_channel_that_cannot_deliver(tmp_path: Path) -> None:
    """The channel's own state reaches the status file, and `scream status` calls it a problem."""
    from edge.health import Health, problems_in
    from edge.sinks import SinkWorker, health_of

    outbox = OutboxConfig(retry_initial_s=0.05, retry_max_s=0.2, alert_after_s=1.0)
    transport = MqttTransport(MqttConfig(enabled=True, host="127.0.0.1", port=free_port()), SITE)
    worker = SinkWorker(AlertChannel("mqtt", Outbox(tmp_path / "o.sqlite3", max_messages=100), transport, outbox))
    try:
        for n in range(6):
            worker.submit(AlarmMessage("end", event(n), ALL))
        assert wait_until(lambda: worker.health()["pending"] == 6 and worker.health()["last_delivery_error"])
        time.sleep(1.2)
        health = Health(device_state="ok", last_audio_at=time.time(), outputs=health_of([worker]))
        health.updated_at = time.time()
        out = health.to_json()["outputs"]["mqtt"]
        assert out["connected"] is False and out["pending"] == 6 and out["oldest_pending_s"] > 1.0
        problems = problems_in(health.to_json())
        assert any("mqtt not connected (6 alerts waiting)" in p for p in problems)
        assert any("has waited" in p and "outbox.alert_after_s" in p for p in problems)
    finally:
        worker.sink.close_grace_s = 0.0  # type: ignore[attr-defined]
        worker.drain()


def test_429_is_retried_and_retry_after_is_honoured(http_server: str, tmp_path: Path) -> None:
    """Too many requests is not a refusal: retried, and not before the Retry-After the receiver gave
    (the channel's own backoff here is 50 ms)."""
    Receiver.script = ["429", "429:1", "200"]
    config = WebhookConfig(enabled=True, url=http_server, timeout_s=2)
    channel = AlertChannel("webhook", Outbox(tmp_path / "o.sqlite3", max_messages=100), WebhookTransport(config), FAST)
    channel.handle(AlarmMessage("end", event(1), ALL))
    assert wait_until(lambda: channel.outbox.stats("webhook")["delivered"] == 1, timeout_s=15.0)
    assert channel.outbox.stats("webhook")["failed"] == 0 and len(Receiver.times) == 3
    assert Receiver.times[1] - Receiver.times[0] < 0.9  # the plain 429: the usual short backoff
    assert Receiver.times[2] - Receiver.times[1] >= 0.95  # "Retry-After: 1" waited for
    channel.close()


def test_webhook_permanent_4xx_is_reported_not_retried_forever(http_server: str, tmp_path: Path) -> None:
    Receiver.script = ["404", "200"]
    config = WebhookConfig(enabled=True, url=http_server, timeout_s=2)
    channel = AlertChannel("webhook", Outbox(tmp_path / "o.sqlite3", max_messages=100), WebhookTransport(config), FAST)
    channel.handle(AlarmMessage("end", event(1), ALL))
    channel.handle(AlarmMessage("end", event(2), ALL))
    assert wait_until(lambda: channel.outbox.stats("webhook")["delivered"] == 1, timeout_s=15.0)
    stats = channel.health()
    assert stats["failed"] == 1 and stats["pending"] == 0
    assert len(Receiver.received) == 2  # one try for the refused alert, then the next one
    channel.close()


def test_alerts_never_block_detection(tmp_path: Path) -> None:
    """Handing alerts over never waits for delivery: with the endpoint hung inside a send, twenty
    alarms are all taken (they only hit SQLite) while that send is still stuck. No clock in the
    assertion: a loaded machine makes SQLite slower, not the hand-over blocking."""
    import threading

    entered, release = threading.Event(), threading.Event()

    class HungEndpoint:
        def deliver(self, message: dict[str, Any]) -> None:
            entered.set()
            release.wait(60)

        def health(self) -> dict[str, Any]:
            return {}

        def close(self) -> None:
            pass

    channel = AlertChannel("webhook", Outbox(tmp_path / "o.sqlite3", max_messages=100), HungEndpoint(), FAST)
    channel.handle(AlarmMessage("end", event(0), ALL))
    assert entered.wait(15)  # the sender is inside deliver() and stays there
    handing = threading.Thread(
        target=lambda: [channel.handle(AlarmMessage("end", event(n), ALL)) for n in range(1, 21)]
    )
    handing.start()
    handing.join(30)
    assert not handing.is_alive() and not release.is_set()
    assert channel.outbox.stats("webhook")["pending"] == 21
    release.set()
    channel.close()


def test_an_unreachable_webhook_is_reported(tmp_path: Path) -> None:
    config = WebhookConfig(enabled=True, url=f"http://127.0.0.1:{free_port()}/none", timeout_s=5)
    channel = AlertChannel("webhook", Outbox(tmp_path / "o.sqlite3", max_messages=100), WebhookTransport(config), FAST)
    for n in range(20):
        channel.handle(AlarmMessage("end", event(n), ALL))
    assert wait_until(lambda: "unreachable" in channel.health()["last_delivery_error"], timeout_s=15.0)
    assert channel.outbox.stats("webhook")["pending"] == 20
    channel.close_grace_s = 0.0
    channel.close()


def test_schedule_can_mute_remote_alerts(tmp_path: Path) -> None:
    config = WebhookConfig(enabled=True, url="http://127.0.0.1:9/none")
    channel = AlertChannel("webhook", Outbox(tmp_path / "o.sqlite3", max_messages=100), WebhookTransport(config), FAST)
    channel.handle(AlarmMessage("end", event(1), frozenset({"led"})))
    assert channel.outbox.stats("webhook")["pending"] == 0
    channel.close()


def test_live_service_sends_alerts_from_its_config(
    tiny_model: Path, broker: Broker, http_server: str, tmp_path: Path
) -> None:
    """`scream listen`'s own wiring: a config with MQTT and a webhook, a scene with a scream."""
    import numpy as np

    from edge import synth
    from edge.cli import build_sinks
    from edge.config import parse_config
    from edge.service import DetectorService
    from edge.sinks import SinkWorker
    from edge.sources import ArraySource

    config = parse_config(
        {
            "site": {"name": "Car Park B", "location": "Level -1"},
            "paths": {"state_dir": str(tmp_path / "state")},
            "gpio": {"enabled": False},
            "model": {"watch": False},
            "mqtt": {"enabled": True, "host": "127.0.0.1", "port": broker.port},
            "webhook": {"enabled": True, "url": http_server, "secret": "k"},
        }
    )
    rng = np.random.default_rng(2)
    audio = synth.room_tone(8.0, 16000, rng)
    scream = synth.scream_like(1.5, 16000, rng)
    audio[48000 : 48000 + scream.size] += scream
    sub = Subscriber(broker.port)
    sinks, unavailable = build_sinks(config)
    assert unavailable == {} and {s.name for s in sinks} >= {"mqtt", "webhook", "event_log", "clips"}
    service = DetectorService(
        config,
        source=ArraySource(audio, 16000),
        model_path=tiny_model,
        outputs=[SinkWorker(s) for s in sinks],
        status_path=tmp_path / "status.json",
    )
    service.run()  # on stop, outputs drain: alerts get a grace period to go out
    assert service.health.events >= 1
    assert sub.wait_for(lambda m: len(events_on(m)) == service.health.events, timeout_s=5)
    ends = [json.loads(b) for b, _ in Receiver.received if json.loads(b)["type"] == "event_end"]
    assert len(ends) == service.health.events and ends[0]["site"] == "Car Park B"
    status = json.loads((tmp_path / "status.json").read_text())
    assert {"mqtt", "webhook"} <= set(status["outputs"])
    sub.close()
