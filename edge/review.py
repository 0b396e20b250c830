"""`scream review`: a small web page on the device for listening to saved clips and labelling them.

Served with the standard library's `http.server` (ThreadingHTTPServer): nothing to install on a
Pi, one process that starts in well under a second, and a page that is three static files (HTML,
JS, CSS; no framework, no CDN) plus JSON. The page draws the log-mel picture and the score timeline
that `scream explain` computes (the same pipeline `listen` runs, `explain.build_timeline`) on a
canvas in the browser, so the Pi never needs matplotlib.

Safety: binds to 127.0.0.1 by default (reach it from a desk machine through an SSH tunnel, see the
README); binding to any other address needs a token, and then every request without it gets 401
(the token comes as `?token=` once, then as a SameSite=Strict HttpOnly cookie, or in an
`X-Scream-Token` header). Without a token only a loopback `Host` is served (no DNS rebinding).
Labels are written only by JSON POSTs (a cross-site form cannot send them), clip names are checked
against the store (no path leaves it), and the service itself opens no port: this is its own command.
"""

from __future__ import annotations

import base64
import hmac
import http.server
import importlib.resources
import ipaddress
import json
import logging
import os
import threading
import time
import urllib.parse
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edge.errors import ScreamError
from edge.labels import LABELS, EventIndex, LabelError

log = logging.getLogger("scream")
COOKIE = "scream_token"
STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/static/review.js": ("review.js", "text/javascript; charset=utf-8"),
    "/static/review.css": ("review.css", "text/css; charset=utf-8"),
}
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; media-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
MAX_BODY = 16_384
MAX_PICTURE_FRAMES = 600  # the log-mel picture's columns at most (longer clips are averaged down)


class ReviewError(ScreamError, ValueError):
    """The review page cannot start as asked (a bind address without a token, a bad address)."""


def parse_bind(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ReviewError(f"--bind must be HOST:PORT (for example 127.0.0.1:8080), got {text!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def timeline_json(timeline: Any) -> dict[str, Any]:
    """What the page draws: the log-mel picture as 8-bit levels (base64), and every window's score."""
    logmel = np.asarray(timeline.logmel, np.float32)
    if logmel.shape[0] > MAX_PICTURE_FRAMES:  # average neighbouring frames down to the picture's width
        logmel = np.stack([chunk.mean(axis=0) for chunk in np.array_split(logmel, MAX_PICTURE_FRAMES)])
    lo, hi = (float(np.percentile(logmel, 1)), float(np.percentile(logmel, 99.5))) if logmel.size else (0.0, 1.0)
    levels = np.clip((logmel - lo) / max(hi - lo, 1e-6) * 255.0, 0, 255).astype(np.uint8)
    d = timeline.decisions
    return {
        "duration_s": round(float(timeline.duration_s), 3),
        "logmel": {
            "frames": int(levels.shape[0]),
            "bands": int(levels.shape[1]) if levels.ndim == 2 else 0,
            "levels": base64.b64encode(levels.tobytes()).decode("ascii"),  # row-major: frame, band
        },
        "windows": [
            {
                "end_s": round(w.end_s, 3),
                "score": round(w.score, 4),
                "decision_score": round(w.decision_score, 4),
                "on": round(w.on_threshold, 4),
                "off": round(w.off_threshold, 4),
                "gated": bool(w.gated),
            }
            for w in timeline.windows
        ],
        "events": [
            {"start_s": round(e.start_s, 3), "end_s": round(e.end_s or e.start_s, 3), "peak": round(e.peak_score, 4)}
            for e in timeline.events
        ],
        "on": round(d.on_threshold, 4),
        "off": round(d.off_threshold, 4),
    }


class TimelineCache:
    """Timelines of recent clips (by name and file time); one at a time through the interpreter."""

    def __init__(self, compute: Callable[[Path], dict[str, Any]], size: int = 32) -> None:
        self.compute = compute
        self.size = size
        self._items: OrderedDict[tuple[str, float], dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, path: Path) -> dict[str, Any]:
        key = (path.name, path.stat().st_mtime)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            value = self.compute(path)
            self._items[key] = value
            while len(self._items) > self.size:
                self._items.popitem(last=False)
            return value


class ReviewApp:
    """What the handler serves: the index of clips, their timelines, and the token rule."""

    def __init__(
        self,
        index: EventIndex,
        *,
        token: str = "",
        timeline: Callable[[Path], dict[str, Any]] | None = None,
        timeline_unavailable: str = "",
        title: str = "scream review",
    ) -> None:
        self.index = index
        self.token = token
        self.timelines = TimelineCache(timeline) if timeline else None
        self.timeline_unavailable = timeline_unavailable or "no model loaded"
        self.title = title

    def listing(self, query: dict[str, str]) -> dict[str, Any]:
        events, problems = self.index.events()
        days = sorted({e.day for e in events if e.day}, reverse=True)
        wanted = query.get("label", "unlabelled")
        day = query.get("day", "")
        try:
            min_score = float(query.get("min_score") or 0.0)
        except ValueError:
            raise LabelError(f"min_score must be a number, got {query.get('min_score')!r}") from None
        if wanted not in ("all", "unlabelled", *LABELS):
            raise LabelError(f"label filter must be all, unlabelled or one of {', '.join(LABELS)}, got {wanted!r}")

        def keep(e: Any) -> bool:
            label = e.label.label if e.label else ""
            return (
                (wanted == "all" or (wanted == "unlabelled" and not label) or wanted == label)
                and (not day or e.day == day)
                and (min_score <= 0 or (e.peak_score or 0.0) >= min_score)
            )

        shown = [e.to_json() for e in events if keep(e)]
        counts = {"all": len(events), "unlabelled": sum(e.label is None for e in events)}
        counts.update({name: sum(bool(e.label and e.label.label == name) for e in events) for name in LABELS})
        return {"title": self.title, "events": shown, "days": days, "counts": counts, "problems": problems}


def gone(name: str) -> str:
    return f"clip {name} is no longer on the device (retention deleted it, or someone removed it)"


def make_handler(app: ReviewApp) -> type[http.server.BaseHTTPRequestHandler]:
    page = importlib.resources.files("edge") / "review_page"

    class Handler(http.server.BaseHTTPRequestHandler):
        server_version = "scream-review"
        sys_version = ""

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("review %s %s", self.address_string(), format % args)

        # -- replies --------------------------------------------------------------------------
        def _send(self, status: int, body: bytes, content_type: str, extra: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for key, value in {**HEADERS, **(extra or {})}.items():
                self.send_header(key, value)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _json(self, status: int, data: Any, extra: dict[str, str] | None = None) -> None:
            self._send(status, json.dumps(data).encode(), "application/json", extra)

        def _error(self, status: int, message: str) -> None:
            self._json(status, {"error": message})

        # -- the rules every request passes -----------------------------------------------------
        def _query(self) -> tuple[str, dict[str, str]]:
            parts = urllib.parse.urlsplit(self.path)
            return urllib.parse.unquote(parts.path), dict(urllib.parse.parse_qsl(parts.query))

        def _presented_token(self, query: dict[str, str]) -> str:
            header = self.headers.get("X-Scream-Token", "")
            cookies = dict(c.strip().split("=", 1) for c in self.headers.get("Cookie", "").split(";") if "=" in c)
            return header or cookies.get(COOKIE, "") or query.get("token", "")

        def _allowed(self, query: dict[str, str]) -> bool:
            if app.token:
                if hmac.compare_digest(self._presented_token(query).encode(), app.token.encode()):
                    return True
                self._send(
                    401,
                    b"401: this review page needs its token: open it as /?token=<the token given to scream review>\n",
                    "text/plain; charset=utf-8",
                    {"WWW-Authenticate": 'Bearer realm="scream review"'},
                )
                return False
            host = self.headers.get("Host", "").rsplit(":", 1)[0].strip("[]")
            if not is_loopback(host):
                self._error(403, f"host {host!r} is not this machine's loopback: open the page as localhost")
                return False
            return True

        # -- GET --------------------------------------------------------------------------------
        def do_HEAD(self) -> None:
            self.do_GET()

        def do_GET(self) -> None:
            path, query = self._query()
            if not self._allowed(query):
                return
            try:
                if path in STATIC:
                    name, content_type = STATIC[path]
                    extra = {}
                    if app.token and query.get("token"):
                        extra["Set-Cookie"] = f"{COOKIE}={app.token}; HttpOnly; SameSite=Strict; Path=/"
                    self._send(200, (page / name).read_bytes(), content_type, extra)
                elif path == "/api/events":
                    self._json(200, app.listing(query))
                elif path.startswith("/api/timeline/"):
                    self._timeline(path.removeprefix("/api/timeline/"))
                elif path.startswith("/clips/"):
                    self._clip(path.removeprefix("/clips/"))
                else:
                    self._error(404, f"no such page: {path}")
            except LabelError as exc:
                self._error(400, str(exc))
            except Exception as exc:  # one bad clip never takes the page down
                log.exception("review: %s failed", path)
                self._error(500, f"{type(exc).__name__}: {exc}")

        def _timeline(self, name: str) -> None:
            file = app.index.clip_path(name)
            if not file.exists():
                self._error(410, gone(name))
            elif app.timelines is None:
                self._error(503, f"no score timeline: {app.timeline_unavailable}")
            else:
                try:
                    self._json(200, app.timelines.get(file))
                except FileNotFoundError:
                    self._error(410, gone(name))
                except ScreamError as exc:
                    self._error(422, f"clip {name} cannot be analysed: {exc}")

        def _clip(self, name: str) -> None:
            file = app.index.clip_path(name)
            try:
                data = file.read_bytes()
            except FileNotFoundError:
                self._error(410, gone(name))
                return
            extra = {"Accept-Ranges": "bytes"}
            first, last = 0, len(data) - 1
            spec = self.headers.get("Range", "")
            if spec.startswith("bytes=") and "," not in spec:
                lo, _, hi = spec[6:].partition("-")
                try:
                    first, last = (int(lo), min(int(hi or last), last)) if lo else (len(data) - int(hi), last)
                except ValueError:
                    first, last = -1, -1
                if not 0 <= first <= last:
                    self._send(416, b"", "audio/wav", {"Content-Range": f"bytes */{len(data)}"})
                    return
                extra["Content-Range"] = f"bytes {first}-{last}/{len(data)}"
                self._send(206, data[first : last + 1], "audio/wav", extra)
                return
            self._send(200, data, "audio/wav", extra)

        # -- POST -------------------------------------------------------------------------------
        def do_POST(self) -> None:
            path, query = self._query()
            if not self._allowed(query):
                return
            if path != "/api/labels":
                self._error(404, f"no such action: {path}")
                return
            if self.headers.get("Content-Type", "").split(";")[0].strip() != "application/json":
                self._error(415, "labels are sent as application/json")
                return
            length = int(self.headers.get("Content-Length") or 0)
            if not 0 < length <= MAX_BODY:
                self._error(413 if length > MAX_BODY else 400, f"a label is a JSON object of at most {MAX_BODY} bytes")
                return
            try:
                body = json.loads(self.rfile.read(length))
                if not isinstance(body, dict):
                    raise ValueError("not an object")
            except ValueError:
                self._error(400, 'a label must be a JSON object: {"clip": ..., "label": ..., "note": ...}')
                return
            try:
                name = str(body.get("clip", ""))
                if not app.index.clip_path(name).exists():
                    self._error(410, gone(name) + ": nothing to label")
                    return
                entry = app.index.labels.set(name, str(body.get("label", "")), note=str(body.get("note", "")))
            except LabelError as exc:
                self._error(400, str(exc))
                return
            self._json(200, {"clip": entry.clip, "label": entry.label, "time": entry.time, "note": entry.note})

    return Handler


def make_server(app: ReviewApp, bind: str) -> http.server.ThreadingHTTPServer:
    """The server for `bind` (HOST:PORT; port 0 picks a free one); refuses a non-loopback address
    without a token."""
    host, port = parse_bind(bind)
    if not is_loopback(host) and not app.token:
        raise ReviewError(
            f"binding the review page to {host} makes it reachable from the network: give it a token "
            "(--token, or token in the config's [review] table), or keep 127.0.0.1 and use an SSH tunnel"
        )
    try:
        server = http.server.ThreadingHTTPServer((host, port), make_handler(app))
    except OSError as exc:
        raise ReviewError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    server.daemon_threads = True
    return server


def build_app(
    *,
    clips_dir: Path,
    event_log: Path | None,
    model: Path | None,
    token: str,
    config: Any = None,
    title: str = "scream review",
) -> ReviewApp:
    """The app over a clip store; timelines come from `model` through explain's pipeline (with the
    config's [detector] settings). A model that will not load leaves the page usable for labels."""
    compute = None
    unavailable = ""
    if model is not None:
        try:
            from edge.classifier import Classifier
            from edge.explain import build_timeline
            from edge.features import FeatureParams

            classifier = Classifier(model, expected_features=FeatureParams())

            def compute(path: Path) -> dict[str, Any]:
                return timeline_json(build_timeline(path, classifier, config))

        except ScreamError as exc:
            unavailable = f"model {model} did not load: {exc}"
            log.warning("review: %s; the page serves clips and labels without score timelines", unavailable)
    return ReviewApp(
        EventIndex(clips_dir, event_log), token=token, timeline=compute, timeline_unavailable=unavailable, title=title
    )


def serve(app: ReviewApp, bind: str, *, ready: Callable[[str], None] | None = None) -> None:
    server = make_server(app, bind)
    host, port = str(server.server_address[0]), int(server.server_address[1])
    url = f"http://{'localhost' if is_loopback(host) else host}:{port}/"
    if ready:
        ready(url)
    started = time.monotonic()
    try:
        server.serve_forever(poll_interval=0.5)
    finally:
        server.server_close()
        log.info("review page closed after %.0f s", time.monotonic() - started)


def token_from(arg: str | None, configured: str) -> str:
    """--token wins over the config; `env:NAME` reads an environment variable (keeps it out of ps)."""
    value = arg if arg is not None else configured
    if value.startswith("env:"):
        name = value[4:]
        if name not in os.environ:
            raise ReviewError(f"the review token names ${name}, which is not set")
        value = os.environ[name]
    if value and len(value) < 16:
        raise ReviewError(f"the review token must be at least 16 characters, got {len(value)}")
    return value
