"""Exception hierarchy: one root for the package, each error also a fitting builtin."""


class ScreamError(Exception):
    """Root of every error this package raises on purpose."""


class AudioError(ScreamError, ValueError):
    """Audio that cannot be read or used: missing, empty, corrupt, unsupported, non-finite."""


class ModelError(ScreamError, ValueError):
    """A model file or sidecar that is missing, corrupt, or disagrees with the feature contract."""


class RuntimeMissingError(ScreamError, ImportError):
    """No TFLite runtime (ai_edge_litert, tflite_runtime, tensorflow.lite) is importable."""


class ConfigError(ScreamError, ValueError):
    """A configuration file with unknown keys, wrong types or out-of-range values."""


class ExtraMissingError(ScreamError, ImportError):
    """An optional dependency is missing; the message names the extra that provides it."""

    def __init__(self, module: str, extra: str, purpose: str) -> None:
        super().__init__(
            f"{purpose} needs the Python module '{module}', which is not installed: "
            f"pip install 'scream-detector[{extra}]'"
        )
        self.module = module
        self.extra = extra
