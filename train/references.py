"""Independent log-mel references for `scream bench`: librosa's STFT and tf.signal, each ending in
the edge's filterbank and log, so a difference is the framing and FFT alone.

The edge finds these through the `scream.logmel_references` entry point group (pyproject.toml), so
edge/ never imports train/; each factory raises ImportError when its library is not installed, and
bench reports that reference as skipped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from edge.features import FeatureParams, mel_filterbank

FloatArray = npt.NDArray[np.float32]
LogMel = Callable[[FloatArray], FloatArray]


def librosa_logmel(params: FeatureParams) -> LogMel:
    import librosa

    weights = mel_filterbank(params)
    # librosa centres a 400-sample window in a 512-point frame: shift by 56 samples to align frames.
    offset = (params.fft_size - params.window_samples) // 2

    def compute(audio: FloatArray) -> FloatArray:
        padded = np.concatenate([np.zeros(offset, np.float32), audio, np.zeros(offset, np.float32)])
        stft = librosa.stft(
            padded,
            n_fft=params.fft_size,
            hop_length=params.hop_samples,
            win_length=params.window_samples,
            window="hann",
            center=False,
        )
        power = (np.abs(stft) ** 2).T[: params.frame_count(audio.size)]
        return np.asarray(np.log(power @ weights + params.log_offset), dtype=np.float32)

    return compute


def tf_signal_logmel(params: FeatureParams) -> LogMel:
    import tensorflow as tf

    weights = tf.constant(mel_filterbank(params))

    @tf.function  # type: ignore[misc]
    def logmel(x: Any) -> Any:
        stft = tf.signal.stft(
            x,
            frame_length=params.window_samples,
            frame_step=params.hop_samples,
            fft_length=params.fft_size,
            window_fn=tf.signal.hann_window,
        )
        return tf.math.log(tf.matmul(tf.abs(stft) ** 2, weights) + params.log_offset)

    def compute(audio: FloatArray) -> FloatArray:
        return np.asarray(logmel(tf.constant(audio)).numpy(), dtype=np.float32)

    return compute
