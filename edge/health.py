"""Health status of the live service, written atomically as JSON and read by `scream status`."""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

STALE_AFTER_S = 15.0


@dataclass
class Health:
    pid: int = field(default_factory=os.getpid)
    started_at: float = field(default_factory=time.time)
    device: str = ""
    device_state: str = "starting"  # starting | ok | retrying | stopped
    device_errors: int = 0
    last_device_error: str = ""
    last_audio_at: float = 0.0
    chunks: int = 0
    overflows: int = 0
    audio_s: float = 0.0
    windows: int = 0
    model_path: str = ""
    model_sha256: str = ""
    reloads: int = 0
    reload_errors: int = 0
    last_reload_error: str = ""
    events: int = 0
    event_active: bool = False
    last_event: dict[str, Any] = field(default_factory=dict)
    schedule: str = ""
    noise_floor_dbfs: float | None = None
    outputs: dict[str, Any] = field(default_factory=dict)
    verifier: dict[str, Any] = field(default_factory=dict)  # the second stage's counters, when one runs
    updated_at: float = 0.0

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["uptime_s"] = round(time.time() - self.started_at, 1)
        return data

    def write(self, path: Path) -> None:
        self.updated_at = time.time()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=1, sort_keys=True))
        tmp.replace(path)


def read_status(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text()))


def problems_in(status: dict[str, Any], now: float | None = None) -> list[str]:
    """What is wrong in a status snapshot; empty when healthy."""
    now = time.time() if now is None else now
    problems = []
    if now - status.get("updated_at", 0) > STALE_AFTER_S:
        problems.append(f"status not updated for {now - status.get('updated_at', 0):.0f} s (service down?)")
    if status.get("device_state") != "ok":
        detail = status.get("last_device_error", "")
        problems.append(f"audio device {status.get('device_state')}" + (f": {detail}" if detail else ""))
    elif now - status.get("last_audio_at", 0) > STALE_AFTER_S:
        problems.append(f"no audio for {now - status.get('last_audio_at', 0):.0f} s")
    if status.get("last_reload_error"):
        problems.append(
            f"model reload refused ({status.get('reload_errors', 0)} so far), still running "
            f"{str(status.get('model_sha256', ''))[:12]}: {status['last_reload_error']}"
        )
    verifier = status.get("verifier") or {}
    if verifier.get("errors"):
        problems.append(
            f"verifier failed {verifier['errors']} time(s), those candidates fired unverified: "
            f"{verifier.get('last_error', '')}"
        )
    for name, out in status.get("outputs", {}).items():
        if not isinstance(out, dict):
            continue
        if out.get("unavailable"):
            problems.append(f"output {name} unavailable: {out['unavailable']}")
        if out.get("connected") is False:
            problems.append(f"output {name} not connected ({out.get('pending', 0)} alerts waiting)")
        elif out.get("pending", 0) > 0 and out.get("last_delivery_error"):
            problems.append(f"output {name}: {out['pending']} alerts waiting: {out['last_delivery_error']}")
        if out.get("pending", 0) > 0 and out.get("oldest_pending_s", 0) > out.get("alert_after_s", float("inf")):
            problems.append(
                f"output {name}: the oldest of {out['pending']} alerts has waited {out['oldest_pending_s']:.0f} s "
                f"(more than outbox.alert_after_s = {out['alert_after_s']:.0f} s)"
            )
        if out.get("delivering") is False:
            problems.append(f"output {name}: its delivery thread has stopped")
    return problems
