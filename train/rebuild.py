"""A trainable Keras model rebuilt from a float TF-Lite model, so a shipped model can be fine-tuned.

Training keeps `<name>-run/model-float.tflite` beside every model it exports (train/pipeline.py);
the int8 file the edge runs cannot be trained, and the Keras weights are not kept. The converter has
folded each batch normalisation into its convolution and the input standardisation into a multiply
and an add, so the rebuilt network is the same function with fewer layers: convolutions with bias
and their fused ReLU6, depthwise convolutions, means, dense layers, the logistic output, and the
adds and multiplies of an ensemble's average. `rebuild` walks the graph's operators in order and
refuses any operator it does not know, and the caller checks the rebuilt model against the file
(`check_rebuild`) before trusting it.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edge.errors import ScreamError

ACTIVATIONS = {0: None, 1: "relu", 3: "relu6"}
PADDING = {0: "same", 1: "valid"}
SHAPE_OPS = ("SHAPE", "STRIDED_SLICE", "PACK")  # what computes a RESHAPE's target from the batch size


class RebuildError(ScreamError, ValueError):
    """The float model holds an operator or layout this rebuild does not handle."""


def _op_names() -> dict[int, str]:
    from tensorflow.lite.python import schema_py_generated as schema

    return {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}


def rebuild(path: str | Path) -> Any:
    """The Keras model computing what the float TF-Lite file at `path` computes."""
    import keras
    from keras import layers
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(path))
    if len(model.subgraphs) != 1:
        raise RebuildError(f"{path}: {len(model.subgraphs)} subgraphs; a scream model has one")
    graph = model.subgraphs[0]
    names = _op_names()

    def constant(index: int) -> npt.NDArray[Any] | None:
        tensor = graph.tensors[index]
        data = model.buffers[tensor.buffer].data
        if data is None or len(data) == 0:
            return None
        dtype = {0: np.float32, 2: np.int32}.get(int(tensor.type))
        if dtype is None:
            raise RebuildError(f"{path}: a constant of TF-Lite type {tensor.type} (a float model holds float32)")
        return np.frombuffer(bytes(data), dtype=dtype).reshape(tuple(int(d) for d in tensor.shape))

    (input_index,) = graph.inputs
    shape = tuple(int(d) for d in graph.tensors[input_index].shape)
    inputs = keras.Input(shape=shape[1:], name="logmel")
    values: dict[int, Any] = {int(input_index): inputs}
    shape_values: set[int] = set()

    def activation(x: Any, code: int) -> Any:
        if code not in ACTIVATIONS:
            raise RebuildError(f"{path}: fused activation {code} is not handled")
        kind = ACTIVATIONS[code]
        return x if kind is None else layers.ReLU(6.0 if kind == "relu6" else None)(x)

    for number, op in enumerate(graph.operators):
        code = model.operatorCodes[op.opcodeIndex]
        name = names.get(max(int(code.builtinCode), int(code.deprecatedBuiltinCode)), "?")
        ins = [int(i) for i in op.inputs]
        (out,) = (int(i) for i in op.outputs)
        options = op.builtinOptions
        if name in SHAPE_OPS:
            # Shape arithmetic (a Flatten or Reshape over a dynamic batch computes its target shape);
            # RESHAPE takes the target from its output tensor's static shape instead.
            shape_values.add(out)
            continue
        data = ins[:1] if name == "RESHAPE" else [i for i in ins if i >= 0]
        if shape_values.intersection(data):
            raise RebuildError(f"{path}: operator {number} ({name}) computes with a tensor's shape")
        if name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            weights, bias = constant(ins[1]), constant(ins[2]) if len(ins) > 2 and ins[2] >= 0 else None
            if weights is None or options.dilationHFactor != 1 or options.dilationWFactor != 1:
                raise RebuildError(f"{path}: operator {number} ({name}) has no constant weights or dilates")
            strides, padding = (int(options.strideH), int(options.strideW)), PADDING[int(options.padding)]
            if name == "CONV_2D":
                filters, kh, kw, _ = weights.shape
                layer = layers.Conv2D(int(filters), (int(kh), int(kw)), strides=strides, padding=padding)
                kernel = weights.transpose(1, 2, 3, 0)
            else:
                _, kh, kw, channels = weights.shape
                multiplier = int(options.depthMultiplier)
                layer = layers.DepthwiseConv2D(
                    (int(kh), int(kw)), strides=strides, padding=padding, depth_multiplier=multiplier
                )
                kernel = weights.reshape(int(kh), int(kw), int(channels) // multiplier, multiplier)
            x = layer(values[ins[0]])
            width = int(weights.shape[0] if name == "CONV_2D" else weights.shape[-1])
            layer.set_weights([kernel, bias if bias is not None else np.zeros(width, np.float32)])
            values[out] = activation(x, int(options.fusedActivationFunction))
        elif name == "FULLY_CONNECTED":
            weights, bias = constant(ins[1]), constant(ins[2]) if len(ins) > 2 and ins[2] >= 0 else None
            if weights is None:
                raise RebuildError(f"{path}: operator {number} (FULLY_CONNECTED) has no constant weights")
            layer = layers.Dense(int(weights.shape[0]))
            x = values[ins[0]]
            if len(x.shape) > 2:
                x = layers.Flatten()(x)
            y = layer(x)
            layer.set_weights([weights.T, bias if bias is not None else np.zeros(weights.shape[0], np.float32)])
            values[out] = activation(y, int(options.fusedActivationFunction))
        elif name == "MEAN":
            axes = constant(ins[1])
            if axes is None:
                raise RebuildError(f"{path}: operator {number} (MEAN) over axes that are not constant")
            axis = tuple(int(a) for a in np.atleast_1d(axes))
            values[out] = layers.Lambda(
                lambda t, axis=axis, keep=bool(options.keepDims): keras.ops.mean(t, axis=axis, keepdims=keep)
            )(values[ins[0]])
        elif name in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
            pooling = layers.AveragePooling2D if name == "AVERAGE_POOL_2D" else layers.MaxPooling2D
            y = pooling(
                pool_size=(int(options.filterHeight), int(options.filterWidth)),
                strides=(int(options.strideH), int(options.strideW)),
                padding=PADDING[int(options.padding)],
            )(values[ins[0]])
            values[out] = activation(y, int(options.fusedActivationFunction))
        elif name == "LOGISTIC":
            values[out] = layers.Activation("sigmoid")(values[ins[0]])
        elif name in ("ADD", "MUL"):
            a, b = (values.get(i) for i in ins)
            c = constant(ins[1]) if b is None else None
            if a is None or (b is None and c is None):
                raise RebuildError(f"{path}: operator {number} ({name}) on inputs this rebuild cannot follow")
            if b is not None:
                y = (layers.Add() if name == "ADD" else layers.Multiply())([a, b])
            else:
                assert c is not None
                if c.size != 1:
                    raise RebuildError(f"{path}: operator {number} ({name}) by a non-scalar constant")
                value = float(c.reshape(-1)[0])
                y = Affine(scale=value if name == "MUL" else 1.0, offset=value if name == "ADD" else 0.0)(a)
            values[out] = activation(y, int(getattr(options, "fusedActivationFunction", 0) or 0))
        elif name == "RESHAPE":
            target = [int(d) for d in graph.tensors[out].shape][1:]
            values[out] = layers.Reshape(tuple(target))(values[ins[0]])
        else:
            raise RebuildError(f"{path}: operator {number} is {name}, which this rebuild does not handle")
    (output_index,) = graph.outputs
    output = values[int(output_index)]
    if len(output.shape) > 2:
        output = layers.Reshape((1,))(output)
    return keras.Model(inputs, output, name="rebuilt")


@functools.cache
def _affine_class() -> Any:
    import keras

    @keras.saving.register_keras_serializable(package="scream")
    class _Affine(keras.layers.Layer):  # type: ignore[misc]
        """x * scale + offset, fixed (the input standardisation the converter folded)."""

        def __init__(self, scale: float = 1.0, offset: float = 0.0, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.scale, self.offset = scale, offset

        def call(self, x: Any) -> Any:
            return x * self.scale + self.offset

        def get_config(self) -> dict[str, Any]:
            return {**super().get_config(), "scale": self.scale, "offset": self.offset}

    return _Affine


def Affine(*, scale: float, offset: float) -> Any:
    return _affine_class()(scale=scale, offset=offset)


def check_rebuild(
    keras_model: Any, path: str | Path, windows: npt.NDArray[np.float32], tolerance: float = 1e-4
) -> float:
    """The largest score difference between the rebuilt model and the float file on `windows`;
    more than `tolerance` is an error (the rebuild would fine-tune some other function)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(str(path))
    interpreter.allocate_tensors()
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    expected = []
    for window in windows:
        interpreter.set_tensor(inp["index"], window[None, ..., None].astype(np.float32))
        interpreter.invoke()
        expected.append(float(interpreter.get_tensor(out["index"]).reshape(-1)[0]))
    got = keras_model.predict(windows[..., None], batch_size=256, verbose=0).reshape(-1)
    worst = float(np.max(np.abs(got - np.array(expected))))
    if worst > tolerance:
        raise RebuildError(f"the model rebuilt from {path} differs from it by up to {worst:.2e} in score")
    return worst
