"""The model `scream listen` runs: loaded once, reloaded on SIGHUP or when its file changes.

A candidate that fails any check (sha256, sidecar, feature contract, input shape, and whatever the
caller's `settle` asks of it, such as a verification pair the config needs) is refused and the running
model kept; health counts reloads and refusals and keeps the last refusal's reason.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from edge.classifier import Classifier
from edge.errors import ModelError, RuntimeMissingError
from edge.features import FeatureParams
from edge.health import Health

log = logging.getLogger("scream")
Settled = TypeVar("Settled")


class RunningModel:
    def __init__(
        self,
        path: Path,
        health: Health,
        *,
        watch: bool,
        watch_interval_s: float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self.health = health
        self.watch = watch
        self.watch_interval_s = watch_interval_s
        self.monotonic = monotonic
        self.classifier = self._load()
        health.model_path = str(path)
        health.model_sha256 = self.classifier.sha256
        self._mtime = self._read_mtime()
        self._last_watch = monotonic()

    def _load(self) -> Classifier:
        """The model file, checked against the feature contract this edge computes."""
        return Classifier(self.path, expected_features=FeatureParams())

    def _read_mtime(self) -> float:
        try:
            return self.path.stat().st_mtime
        except OSError:
            return 0.0

    def file_changed(self) -> bool:
        """With `watch`, at most every `watch_interval_s`: whether the file changed since it was read."""
        now = self.monotonic()
        if not self.watch or now - self._last_watch < self.watch_interval_s:
            return False
        self._last_watch = now
        mtime = self._read_mtime()
        return bool(mtime) and mtime != self._mtime

    def reload(self, settle: Callable[[Classifier], Settled]) -> tuple[Classifier, Settled] | None:
        """The validated new model (now the running one) and what `settle` made of it (the settings
        it runs with), or None when it was refused: by a check here, or by `settle` raising ModelError."""
        self._mtime = self._read_mtime()
        try:
            candidate = self._load()
            if candidate.input_shape != self.classifier.input_shape:
                raise ModelError(f"input shape {candidate.input_shape} differs from the running model's")
            settled = settle(candidate)
        except (ModelError, RuntimeMissingError, OSError) as exc:
            self.health.reload_errors += 1
            self.health.last_reload_error = str(exc)
            log.error("model reload refused, keeping %s: %s", self.health.model_sha256[:12], exc)
            return None
        self.classifier = candidate
        self.health.model_sha256 = candidate.sha256
        self.health.reloads += 1
        self.health.last_reload_error = ""
        log.info("model reloaded: %s sha256 %s", self.path, candidate.sha256[:12])
        return candidate, settled
