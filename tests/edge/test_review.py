"""`scream review`'s HTTP side on 127.0.0.1 with a clip store the real `listen` wrote: listing and
filters, timelines, audio with ranges, labels, the token, path traversal, gone clips, bad requests."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edge.config import load_config
from edge.labels import LabelStore
from edge.review import ReviewApp, ReviewError, build_app, make_server, parse_bind, token_from

TOKEN = "s3cret-token-for-tests"


def start(app: ReviewApp, bind: str = "127.0.0.1:0") -> tuple[str, Any]:
    server = make_server(app, bind)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}", server


def request(
    url: str, *, data: Any = None, headers: dict[str, str] | None = None, method: str | None = None
) -> tuple[int, dict[str, str], bytes]:
    body = json.dumps(data).encode() if data is not None and not isinstance(data, bytes) else data
    hdrs = {"Content-Type": "application/json"} if data is not None else {}
    req = urllib.request.Request(url, data=body, headers={**hdrs, **(headers or {})}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as reply:
            return reply.status, dict(reply.headers), reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def app_for(config_path: Path, model: Path | None, token: str = "") -> ReviewApp:
    config = load_config(config_path)
    return build_app(
        clips_dir=config.state_path(config.clips.dir),
        event_log=config.state_path(config.event_log.path),
        model=model,
        token=token,
        config=config,
    )


@pytest.fixture
def site(clip_store: Path, tiny_model: Path) -> Iterator[tuple[str, Path]]:
    url, server = start(app_for(clip_store, tiny_model))
    yield url, load_config(clip_store).state_path("clips")
    server.shutdown()
    server.server_close()


def test_the_listing_shows_what_listen_saved_and_filters_it(site: tuple[str, Path]) -> None:
    url, clips = site
    status, headers, body = request(url + "/api/events?label=all")
    assert status == 200 and headers["Content-Type"] == "application/json"
    listing = json.loads(body)
    saved = sorted(p.name for p in clips.glob("*.wav"))
    assert len(saved) == 3 and sorted(e["clip"] for e in listing["events"]) == saved
    for event in listing["events"]:
        assert event["exists"] and event["site"] == "hall" and event["location"] == "first floor"
        assert 0.5 < event["peak_score"] <= 1.0 and event["duration_s"] > 0 and event["label"] == ""
    assert listing["counts"] == {"all": 3, "unlabelled": 3, "scream": 0, "non_scream": 0, "unsure": 0}
    day = listing["events"][0]["day"]
    assert listing["days"] == [day]
    first = listing["events"][0]["clip"]
    status, _, _ = request(url + "/api/labels", data={"clip": first, "label": "non_scream"})
    assert status == 200
    unlabelled = json.loads(request(url + "/api/events")[2])  # the default filter
    assert [e["clip"] for e in unlabelled["events"]] == [e["clip"] for e in listing["events"][1:]]
    assert [e["clip"] for e in json.loads(request(url + "/api/events?label=non_scream")[2])["events"]] == [first]
    assert json.loads(request(url + "/api/events?label=all&day=1999-01-01")[2])["events"] == []
    assert json.loads(request(url + "/api/events?label=all&min_score=1.01")[2])["events"] == []
    status, _, body = request(url + "/api/events?min_score=lots")
    assert status == 400 and "min_score must be a number" in json.loads(body)["error"]
    status, _, body = request(url + "/api/events?label=maybe")
    assert status == 400 and "label filter must be" in json.loads(body)["error"]


def test_a_timeline_is_the_one_explain_draws(site: tuple[str, Path], tiny_model: Path, clip_store: Path) -> None:
    from edge.classifier import Classifier
    from edge.explain import build_timeline

    url, clips = site
    clip = sorted(clips.glob("*.wav"))[0]
    status, _, body = request(url + "/api/timeline/" + clip.name)
    assert status == 200
    timeline = json.loads(body)
    expected = build_timeline(clip, Classifier(tiny_model), load_config(clip_store))
    assert [w["score"] for w in timeline["windows"]] == [round(w.score, 4) for w in expected.windows]
    assert len(timeline["events"]) == len(expected.events) >= 1  # the clip holds the event it was cut for
    picture = timeline["logmel"]
    assert (picture["frames"], picture["bands"]) == expected.logmel.shape
    import base64

    assert len(base64.b64decode(picture["levels"])) == picture["frames"] * picture["bands"]


def test_audio_is_served_whole_and_by_range(site: tuple[str, Path]) -> None:
    url, clips = site
    clip = sorted(clips.glob("*.wav"))[0]
    data = clip.read_bytes()
    status, headers, body = request(url + "/clips/" + clip.name)
    assert (status, headers["Content-Type"], body) == (200, "audio/wav", data)
    status, headers, body = request(url + "/clips/" + clip.name, headers={"Range": "bytes=100-199"})
    assert (status, body, headers["Content-Range"]) == (206, data[100:200], f"bytes 100-199/{len(data)}")
    status, _, body = request(url + "/clips/" + clip.name, headers={"Range": "bytes=-44"})
    assert (status, body) == (206, data[-44:])
    status, headers, _ = request(url + "/clips/" + clip.name, headers={"Range": f"bytes={len(data)}-"})
    assert status == 416 and headers["Content-Range"] == f"bytes */{len(data)}"


@pytest.mark.parametrize(
    "path",
    [
        "/clips/..%2Fsite.toml",
        "/clips/../events.jsonl",
        "/clips/%2Fetc%2Fpasswd",
        "/clips/labels.tsv",
        "/api/timeline/..%2F..%2Fsite.toml",
    ],
)
def test_no_path_leaves_the_clip_store(site: tuple[str, Path], path: str) -> None:
    url, _ = site
    status, _, body = request(url + path)
    assert status == 400 and "not a clip name of the store" in json.loads(body)["error"]
    assert b"[site]" not in body and b"root:" not in body and b"event_end" not in body


def test_a_clip_deleted_meanwhile_says_so(site: tuple[str, Path]) -> None:
    url, clips = site
    clip = sorted(clips.glob("*.wav"))[0]
    clip.unlink()
    for path in ("/clips/", "/api/timeline/"):
        status, _, body = request(url + path + clip.name)
        assert status == 410
        assert json.loads(body)["error"] == (
            f"clip {clip.name} is no longer on the device (retention deleted it, or someone removed it)"
        )
    status, _, body = request(url + "/api/labels", data={"clip": clip.name, "label": "scream"})
    assert status == 410 and "nothing to label" in json.loads(body)["error"]
    listing = json.loads(request(url + "/api/events?label=all")[2])
    assert {e["clip"]: e["exists"] for e in listing["events"]}[clip.name] is False


def test_labels_are_written_atomically_and_bad_ones_refused(site: tuple[str, Path]) -> None:
    url, clips = site
    clip = sorted(clips.glob("*.wav"))[0].name
    status, _, body = request(url + "/api/labels", data={"clip": clip, "label": "scream", "note": "in the hall"})
    assert status == 200 and json.loads(body)["label"] == "scream"
    assert LabelStore(clips).load()[clip].note == "in the hall"
    assert clip in (clips / "labels.tsv").read_text()
    cases = [
        ({"clip": clip, "label": "maybe"}, 400, "unknown label"),
        ({"clip": "../site.toml", "label": "scream"}, 400, "not a clip name"),
        (b"[1, 2]", 400, "JSON object"),
        (b"{not json", 400, "JSON object"),
    ]
    for data, code, text in cases:
        status, _, body = request(url + "/api/labels", data=data)
        assert status == code and text in json.loads(body)["error"], (data, body)
    form = urllib.parse.urlencode({"clip": clip, "label": "non_scream"}).encode()
    status, _, body = request(
        url + "/api/labels", data=form, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert status == 415  # a cross-site form cannot label
    assert LabelStore(clips).load()[clip].label == "scream"
    assert request(url + "/api/nothing", data={"a": 1})[0] == 404


def test_the_token_is_enforced_on_every_request(clip_store: Path, tiny_model: Path) -> None:
    url, server = start(app_for(clip_store, tiny_model, token=TOKEN))
    try:
        clips = load_config(clip_store).state_path("clips")
        clip = sorted(clips.glob("*.wav"))[0].name
        for path in ("/", "/static/review.js", "/api/events", f"/clips/{clip}", f"/api/timeline/{clip}"):
            assert request(url + path)[0] == 401, path
            assert request(url + path, headers={"X-Scream-Token": "wrong-token-of-16+"})[0] == 401
            assert request(url + path, headers={"X-Scream-Token": TOKEN})[0] == 200, path
        assert request(url + "/api/labels", data={"clip": clip, "label": "scream"})[0] == 401
        assert LabelStore(clips).load() == {}
        status, headers, _ = request(url + f"/?token={TOKEN}")
        assert status == 200
        cookie = headers["Set-Cookie"]
        assert cookie.startswith(f"scream_token={TOKEN};") and "HttpOnly" in cookie and "SameSite=Strict" in cookie
        ok = request(
            url + "/api/labels", data={"clip": clip, "label": "scream"}, headers={"Cookie": f"scream_token={TOKEN}"}
        )
        assert ok[0] == 200
    finally:
        server.shutdown()
        server.server_close()


def test_off_loopback_needs_a_token_and_then_checks_it(clip_store: Path, tiny_model: Path) -> None:
    with pytest.raises(ReviewError, match="reachable from the network: give it a token"):
        make_server(app_for(clip_store, tiny_model), "0.0.0.0:0")
    server = make_server(app_for(clip_store, tiny_model, token=TOKEN), "0.0.0.0:0")
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        assert request(url + "/api/events")[0] == 401
        assert request(url + "/api/events", headers={"X-Scream-Token": TOKEN})[0] == 200
    finally:
        server.shutdown()
        server.server_close()


def test_without_a_token_only_a_loopback_host_is_served(site: tuple[str, Path]) -> None:
    url, _ = site
    assert request(url + "/api/events", headers={"Host": "localhost:8080"})[0] == 200
    status, _, body = request(url + "/api/events", headers={"Host": "evil.example:8080"})
    assert status == 403 and "not this machine's loopback" in json.loads(body)["error"]


def test_a_model_that_will_not_load_leaves_labelling_working(clip_store: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(b"not a model")
    url, server = start(app_for(clip_store, broken))
    try:
        clip = json.loads(request(url + "/api/events")[2])["events"][0]["clip"]
        status, _, body = request(url + "/api/timeline/" + clip)
        assert status == 503 and f"model {broken} did not load" in json.loads(body)["error"]
        assert request(url + "/api/labels", data={"clip": clip, "label": "unsure"})[0] == 200
    finally:
        server.shutdown()
        server.server_close()


def test_bind_and_token_rules() -> None:
    assert parse_bind("127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert parse_bind("[::1]:9000") == ("::1", 9000)
    for bad in ("8080", "host:", "host:http", "host:70000"):
        with pytest.raises(ReviewError, match="--bind must be HOST:PORT"):
            parse_bind(bad)
    with pytest.raises(ReviewError, match="at least 16 characters"):
        token_from("short", "")
    assert token_from(None, "from-the-config-0123") == "from-the-config-0123"
    assert token_from("", "from-the-config-0123") == ""  # an explicit empty --token wins


def test_token_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REVIEW_TOKEN_FOR_TEST", TOKEN)
    assert token_from("env:REVIEW_TOKEN_FOR_TEST", "") == TOKEN
    with pytest.raises(ReviewError, match=r"names \$NOT_SET_ANYWHERE, which is not set"):
        token_from("env:NOT_SET_ANYWHERE", "")


def test_the_config_rejects_a_bad_review_table(tmp_path: Path) -> None:
    from edge.config import parse_config
    from edge.errors import ConfigError

    assert parse_config({"review": {"bind": "0.0.0.0:8443", "token": "env:X"}}).review.bind == "0.0.0.0:8443"
    with pytest.raises(ConfigError, match=r"review\.token must be empty, env:NAME or at least 16 characters"):
        parse_config({"review": {"token": "abc"}})
    with pytest.raises(ConfigError, match=r"review\.bind must be HOST:PORT"):
        parse_config({"review": {"bind": "8080"}})
