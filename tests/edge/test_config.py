from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest

from edge.config import Config, load_config, parse_config
from edge.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "config.example.toml"


def test_example_config_lists_every_key_with_its_default() -> None:
    raw = tomllib.loads(EXAMPLE.read_text())
    defaults = Config()
    for section in dataclasses.fields(Config):
        if section.name == "schedule":
            continue
        keys = {f.name for f in dataclasses.fields(getattr(defaults, section.name))}
        assert set(raw[section.name]) == keys, section.name
    loaded = load_config(EXAMPLE)
    for section in dataclasses.fields(Config):
        if section.name not in ("site", "schedule"):  # the two marked "example"
            assert getattr(loaded, section.name) == getattr(defaults, section.name), section.name


@pytest.mark.parametrize(
    "data, message",
    [
        ({"mqtt": {"port": 70000}}, "mqtt.port must be a TCP port 1-65535, got 70000"),
        ({"mqtt": {"topic_prefix": "a/#"}}, "mqtt.topic_prefix must be a topic without the wildcards"),
        (
            {"webhook": {"enabled": True, "url": "not a url"}},
            "webhook.url must be an http:// or https:// URL when the webhook is enabled, got 'not a url'",
        ),
        ({"outbox": {"max_messages": 1}}, "outbox.max_messages must be in 10-10000000, got 1"),
        ({"schedule": {"name": "x"}}, r"schedule must be an array of tables"),
        ({"schedule": [{"name": "x", "start": "22:00"}]}, r"schedule\[0\].end is required"),
        (
            {"schedule": [{"name": "x", "start": "22:00", "end": "07:00", "days": ["funday"]}]},
            r"schedule\[0\].days must be a non-empty list of mon/tue/wed/thu/fri/sat/sun, got \['funday'\]",
        ),
        ({"site": "hall"}, "site must be a table"),
        ({"audio": {"device": True}}, "audio.device must be"),
        (
            {"detector": {"patience_of": 3}},
            "detector.patience_windows must be 0 .the model's own. or set with the other",
        ),
        (
            {"detector": {"patience_windows": 2, "patience_of": 1}},
            r"detector.patience_windows must be 0 \(the model's own\) or at most patience_of \(1\), got 2",
        ),
        (
            {"detector": {"patience_windows": 2}},
            "detector.patience_of must be 0 .the model's own. or set with the other",
        ),
        (
            {"detector": {"smoothing_windows": 101}},
            "detector.smoothing_windows must be 0 .the model's own. or a whole number in 1-100, got 101",
        ),
        (
            {"detector": {"on_threshold": 0.7, "off_threshold": 0.8}},
            r"detector.off_threshold must be 0 \(the model's own\) or at most on_threshold \(0.7\), got 0.8",
        ),
        ({"detector": {"smoothing_windows": 2.5}}, "detector.smoothing_windows must be"),
    ],
)
def test_bad_values_name_their_key(data: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(data)


def test_ints_are_accepted_for_floats_and_device_by_index_or_name() -> None:
    config = parse_config({"detector": {"cooldown_s": 3}, "audio": {"device": 2}})
    assert config.detector.cooldown_s == 3.0 and isinstance(config.detector.cooldown_s, float)
    assert parse_config({"audio": {"device": "USB"}}).audio.device == "USB"


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "none.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[detector\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def test_patience_defaults_to_the_models_own() -> None:
    assert (Config().detector.patience_windows, Config().detector.patience_of) == (0, 0)
    d = parse_config({"detector": {"patience_windows": 2, "patience_of": 3}}).detector
    assert (d.patience_windows, d.patience_of) == (2, 3)
    assert Config().detector.smoothing_windows == 0  # the model's own
    assert parse_config({"detector": {"smoothing_windows": 3}}).detector.smoothing_windows == 3
