"""The review page in a real headless browser (Debian's chromium through chromedriver, driven by
Selenium): the list loads, the audio element has the clip, the picture is drawn, a click and a key
write labels that a reload shows, a clip deleted meanwhile says so, a path outside the store is
refused, and off loopback the token is enforced. With SCREAM_SCREENSHOTS=DIR the screenshots go
there (`make screenshots` refreshes docs/review/ for the README)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edge.config import load_config
from edge.labels import EventIndex, LabelStore
from edge.review import build_app, make_server
from tests.helpers import require_program, wait_until

TOKEN = "browser-test-token-0123"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    chromium = require_program("chromium")
    driver_path = require_program("chromedriver")
    pytest.importorskip("selenium")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--mute-audio",
        "--window-size=1400,900",
        "--autoplay-policy=no-user-gesture-required",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def serve(config_path: Path, model: Path, *, token: str = "", bind: str = "127.0.0.1:0") -> tuple[str, Any]:
    config = load_config(config_path)
    app = build_app(
        clips_dir=config.state_path(config.clips.dir),
        event_log=config.state_path(config.event_log.path),
        model=model,
        token=token,
        config=config,
        title="hall: review",
    )
    server = make_server(app, bind)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}", server


def shot(driver: Any, tmp_path: Path, name: str) -> Path:
    folder = Path(os.environ.get("SCREAM_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    assert driver.save_screenshot(str(path))
    assert path.stat().st_size > 10_000  # a picture, not an empty page
    return path


def text_of(driver: Any, css: str) -> str:
    from selenium.webdriver.common.by import By

    return str(driver.find_element(By.CSS_SELECTOR, css).text)


def test_listen_then_label_in_the_browser(browser: Any, clip_store: Path, tiny_model: Path, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    config = load_config(clip_store)
    clips = config.state_path("clips")
    # The page lists newest first (by the event's start in the log; the replay wrote all in one second).
    names = [e.clip for e in EventIndex(clips, config.state_path("events.jsonl")).events()[0]]
    assert sorted(names) == sorted(p.name for p in clips.glob("*.wav"))
    url, server = serve(clip_store, tiny_model)
    try:
        browser.get(url + "/?label=all")
        assert wait_until(lambda: len(browser.find_elements(By.CSS_SELECTOR, "#events tbody tr")) == 3, 20)
        rows = browser.find_elements(By.CSS_SELECTOR, "#events tbody tr")
        assert [r.get_attribute("data-clip") for r in rows] == names
        assert "3 clips: 3 unlabelled" in text_of(browser, "#counts")
        assert "site hall" in text_of(browser, "#d-meta") and "peak score" in text_of(browser, "#d-meta")
        # The audio element has the first clip, and the browser decoded it (its duration is the file's).
        audio = browser.find_element(By.ID, "d-audio")
        assert audio.get_attribute("src") == f"{url}/clips/{names[0]}"
        assert wait_until(lambda: browser.execute_script("return arguments[0].readyState", audio) >= 1, 20)
        duration = browser.execute_script("return arguments[0].duration", audio)
        frames = (clips / names[0]).stat().st_size - 44
        assert duration == pytest.approx(frames / 2 / 16000, abs=0.05)
        # The picture: the timeline came back and the canvas is no longer blank.
        assert wait_until(lambda: "windows" in text_of(browser, "#d-picture-note"), 30)
        lit = browser.execute_script(
            "const c = document.getElementById('d-picture'); const d = c.getContext('2d')"
            ".getImageData(0, 0, c.width, c.height).data; let n = 0;"
            "for (let i = 0; i < d.length; i += 4) if (d[i] + d[i+1] + d[i+2] > 60) n++; return n / (d.length / 4);"
        )
        assert lit > 0.2
        shot(browser, tmp_path, "review-list")

        browser.find_element(By.ID, "d-note").send_keys("the parrot")
        browser.find_element(By.ID, "b-non_scream").click()
        assert wait_until(lambda: names[0] in LabelStore(clips).load(), 10)
        first = LabelStore(clips).load()[names[0]]
        assert (first.label, first.note) == ("non_scream", "the parrot")
        # The page moved on to the next clip; a key labels it.
        assert wait_until(lambda: browser.find_element(By.ID, "detail").get_attribute("data-clip") == names[1], 10)
        browser.find_element(By.TAG_NAME, "body").send_keys("s")
        assert wait_until(lambda: names[1] in LabelStore(clips).load(), 10)
        assert LabelStore(clips).load()[names[1]].label == "scream"

        browser.refresh()  # labels survive a reload (and are read back from labels.tsv)
        assert wait_until(lambda: len(browser.find_elements(By.CSS_SELECTOR, "#events tbody tr .badge")) == 2, 20)
        badges = {
            r.get_attribute("data-clip"): r.text for r in browser.find_elements(By.CSS_SELECTOR, "#events tbody tr")
        }
        assert badges[names[0]].endswith("not a scream") and badges[names[1]].endswith("scream")
        assert "1 unlabelled, 1 scream, 1 not a scream" in text_of(browser, "#counts")
        shot(browser, tmp_path, "review-labelled")

        # The default filter shows what is left to do.
        browser.get(url + "/")
        assert wait_until(lambda: len(browser.find_elements(By.CSS_SELECTOR, "#events tbody tr")) == 1, 20)

        # A clip deleted meanwhile (retention, or by hand): choosing it says so; labelling it is refused.
        (clips / names[2]).unlink()
        browser.find_element(By.CSS_SELECTOR, "#events tbody tr").click()
        gone = f"clip {names[2]} is no longer on the device"
        assert wait_until(lambda: gone in text_of(browser, "#message"), 20)
        browser.find_element(By.ID, "b-scream").click()
        assert wait_until(lambda: text_of(browser, "#message").startswith("not saved: " + gone), 10)
        assert names[2] not in LabelStore(clips).load()
        shot(browser, tmp_path, "review-clip-gone")

        # A path outside the clip store, typed into the address bar, is refused.
        browser.get(url + "/clips/..%2Fsite.toml")
        body = text_of(browser, "body")
        assert "not a clip name of the store" in body and "[site]" not in body
    finally:
        server.shutdown()
        server.server_close()


def test_off_loopback_the_browser_needs_the_token(browser: Any, clip_store: Path, tiny_model: Path) -> None:
    from selenium.webdriver.common.by import By

    url, server = serve(clip_store, tiny_model, token=TOKEN, bind="0.0.0.0:0")
    try:
        browser.delete_all_cookies()
        browser.get(url + "/")
        assert text_of(browser, "body").startswith("401: this review page needs its token")
        browser.get(url + "/api/events")
        assert "401" in text_of(browser, "body")
        browser.get(f"{url}/?token={TOKEN}&label=all")  # once with the token: it becomes a cookie
        assert wait_until(lambda: len(browser.find_elements(By.CSS_SELECTOR, "#events tbody tr")) == 3, 20)
        browser.get(url + "/?label=all")  # no token in the address any more: the cookie carries it
        assert wait_until(lambda: len(browser.find_elements(By.CSS_SELECTOR, "#events tbody tr")) == 3, 20)
        audio = browser.find_element(By.ID, "d-audio")
        assert wait_until(lambda: browser.execute_script("return arguments[0].readyState", audio) >= 1, 20)
        browser.delete_all_cookies()
        browser.get(url + "/?label=all")
        assert text_of(browser, "body").startswith("401")
    finally:
        server.shutdown()
        server.server_close()
