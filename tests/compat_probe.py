"""The demo scene through the edge pipeline, as JSON, for tests/edge/test_compat.py.

That test runs this file in a second environment (numpy 1.x and tflite-runtime 2.14, which is what
a Pi that has only tflite-runtime runs) and compares its output with the same run in the test's own
environment (numpy 2 and LiteRT). Usage: python tests/compat_probe.py MODEL [RUNTIME], or
python tests/compat_probe.py --verifier MODEL HEAD: a second stage with a head (its intermediate
embedding tensor read with every tensor kept) scoring a few windows.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import numpy as np


def run(model: str, runtime: str | None = None) -> dict[str, Any]:
    from edge.classifier import Classifier
    from edge.detector import EventStarted
    from edge.features import LogMelExtractor
    from edge.pipeline import DetectionPipeline, chunked
    from edge.synth import demo_scene

    classifier = Classifier(model, runtime=runtime)
    side = classifier.sidecar
    out: dict[str, Any] = {"numpy": np.__version__, "runtime": classifier.runtime}
    # At the model's rate, and at 48 kHz so the resampler runs as well.
    for rate in (side.features.sample_rate_hz, 48000):
        audio, _ = demo_scene(rate, seed=7)
        pipeline = DetectionPipeline.for_model(classifier, source_rate_hz=rate)
        result = pipeline.run(chunked(audio, rate // 10))
        out[str(rate)] = {
            "scores": [w.score for w in result.windows],
            "alarms_s": [t.event.detected_s for t in result.transitions if isinstance(t, EventStarted)],
        }
        if rate == side.features.sample_rate_hz:
            out["features"] = LogMelExtractor(side.features).compute(audio[: 2 * rate]).tolist()
    return out


def verify(model: str, head: str, runtime: str | None = None) -> dict[str, Any]:
    from edge.synth import scream_like
    from edge.verifier import EventVerifier

    verifier = EventVerifier(model, classes=["Screaming"], threshold=0.5, head=head, runtime=runtime)
    rng = np.random.default_rng(5)
    windows = [(rng.standard_normal(verifier.window_samples) * a).astype(np.float32) for a in (0.003, 0.03, 0.3)]
    windows.append(scream_like(1.0, 16000, rng, level=0.4)[: verifier.window_samples].astype(np.float32))
    return {"runtime": verifier.runtime, "scores": [verifier.score(w) for w in windows]}


if __name__ == "__main__":
    if sys.argv[1] == "--verifier":
        json.dump(verify(sys.argv[2], sys.argv[3]), sys.stdout)
    else:
        json.dump(run(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None), sys.stdout)
