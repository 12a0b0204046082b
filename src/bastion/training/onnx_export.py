"""Export a trained head to one ONNX graph that onnxruntime runs without scikit-learn.

Sigmoid calibration (the default): the scaler and the calibrated classifier are
converted together by skl2onnx as a two-step pipeline whose *last* step is the
calibrator, which wraps the bare logistic regression. That arrangement converts
exactly; the other one, a calibrator wrapping a pipeline, does not (skl2onnx 1.20
applies the sigmoid to probabilities instead of raw scores: sklearn-onnx issue 1246),
which is why training keeps the scaler outside the calibrator. The converted graph's
class-probability output is cut down to the positive column, the label branch dropped.

Isotonic calibration: skl2onnx 1.20 replaces the calibrator's linear interpolation
by a nearest-knot lookup, which is off by several points of probability, so this
module writes that graph itself: the scaler and each fold's logistic regression in
float64, rounding to float32 where scikit-learn keeps float32 input float32 (the
scaled values, the scores, the calibrated values), each fold's isotonic function as
an exact piecewise-linear sum of clipped ramps, and the mean over folds.

Either way the model has one input ``embedding`` ``[N, d]`` and one output
``probability`` ``[N]``, and carries the head's metadata. Tests check both kinds
against scikit-learn's probabilities and decisions.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper, numpy_helper
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.pipeline import Pipeline

from bastion.training.head import TrainedHead
from bastion.training.inference import (
    HEAD_FORMAT,
    INPUT_NAME,
    OUTPUT_NAME,
    HeadMetadata,
    OnnxHead,
    load_head,
)

__all__ = ["OPSET", "OnnxHead", "export_head", "head_metadata", "load_head"]

OPSET: dict[str, int] = {"": 17, "ai.onnx.ml": 3}
"""Opsets a head is exported at: the default domain at 17; ``ai.onnx.ml`` (the sigmoid
graph's scaler and linear classifier) at most 3, skl2onnx taking the lowest that has
the operators. onnxruntime ≥ 1.17 runs both."""

IR_VERSION = 8
"""ONNX IR version of the hand-written graph: the one that came with opset 17."""

_PROBABILITIES = "probabilities"


def head_metadata(
    head: TrainedHead, *, category: str, embedding_model: str, embedding_version: str
) -> HeadMetadata:
    """The metadata an exported head carries."""
    s = head.summary
    return HeadMetadata(
        format=HEAD_FORMAT,
        category=category,
        threshold=s.threshold,
        embedding_model=embedding_model,
        embedding_version=embedding_version,
        feature_dim=s.feature_dim,
        training_set_hash=s.training_set_hash,
        calibration=s.calibration,
        c=s.c,
    )


def export_head(
    head: TrainedHead, *, category: str, embedding_model: str, embedding_version: str
) -> bytes:
    """The head as ONNX bytes: input ``embedding`` ``[N, d]`` float32, output
    ``probability`` ``[N]`` float32, opsets :data:`OPSET`, metadata ``bastion.*``."""
    metadata = head_metadata(
        head,
        category=category,
        embedding_model=embedding_model,
        embedding_version=embedding_version,
    )
    model = _isotonic_graph(head) if head.summary.calibration == "isotonic" else _converted(head)
    model.producer_name = "bastion"
    model.doc_string = (
        f"Bastion head for {category!r}: calibrated probability of the positive class "
        f"from {embedding_model} embeddings."
    )
    helper.set_model_props(model, metadata.props())
    onnx.checker.check_model(model, full_check=True)
    return bytes(model.SerializeToString())


def _converted(head: TrainedHead) -> onnx.ModelProto:
    """The sigmoid-calibrated head converted by skl2onnx, cut down to ``probability``."""
    chain = Pipeline([("scale", head.scaler), ("classify", head.calibrated)])
    converted: Any = convert_sklearn(
        chain,
        name="bastion_head",
        initial_types=[(INPUT_NAME, FloatTensorType([None, head.feature_dim]))],
        target_opset=dict(OPSET),
        options={id(head.calibrated): {"zipmap": False}},
    )
    model: onnx.ModelProto = converted
    _positive_output(model)
    _prune(model)
    return model


class _Graph:
    """Nodes and initializers of a graph being written, with fresh names."""

    def __init__(self) -> None:
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._count = 0

    def name(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def const(self, hint: str, value: npt.ArrayLike, dtype: type = np.float64) -> str:
        name = self.name(hint)
        self.initializers.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def op(self, op_type: str, inputs: list[str], hint: str, **attrs: Any) -> str:
        out = self.name(hint)
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out


def _isotonic_graph(head: TrainedHead) -> onnx.ModelProto:
    """The isotonic-calibrated head as a hand-written float64 graph (see the module)."""
    g = _Graph()
    folds = head.calibrated.calibrated_classifiers_
    weights = np.stack([np.asarray(f.estimator.coef_, dtype=np.float64)[0] for f in folds], 1)
    biases = np.array([float(f.estimator.intercept_[0]) for f in folds])
    double, single = TensorProto.DOUBLE, TensorProto.FLOAT

    def as_float32(name: str) -> str:  # scikit-learn keeps float32 input float32
        return g.op("Cast", [g.op("Cast", [name], "f32", to=single)], "f64", to=double)

    x = g.op("Cast", [INPUT_NAME], "x64", to=double)
    centred = as_float32(g.op("Sub", [x, g.const("mean", head.scaler.mean_)], "centred"))
    scaled = as_float32(g.op("Div", [centred, g.const("scale", head.scaler.scale_)], "scaled"))
    # the classifiers keep float32 input float32: scores, knots and calibrated values
    raw = as_float32(
        g.op(
            "Add",
            [g.op("MatMul", [scaled, g.const("w", weights)], "dot"), g.const("b", biases)],
            "raw",
        )
    )
    probabilities = []
    for k, fold in enumerate(folds):
        (iso,) = fold.calibrators
        knots_x = np.asarray(iso.X_thresholds_, dtype=np.float64)
        knots_y = np.asarray(iso.y_thresholds_, dtype=np.float64)
        column = g.op("Gather", [raw, g.const("k", k, np.int64)], "score", axis=1)
        t = g.op(
            "Clip",
            [column, g.const("lo", float(iso.X_min_)), g.const("hi", float(iso.X_max_))],
            "clipped",
        )
        start = g.const("y0", float(knots_y[0]))
        if knots_x.shape[0] < 2:  # a constant calibrator
            zero = g.op("Mul", [t, g.const("zero", 0.0)], "zero")
            probabilities.append(as_float32(g.op("Add", [zero, start], "p")))
            continue
        widths = np.diff(knots_x)
        slopes = np.diff(knots_y) / widths
        # interp(t) = y0 + Σ slope_j · clip(t − x_j, 0, width_j)
        offsets = g.op(
            "Sub",
            [
                g.op("Unsqueeze", [t, g.const("axis", [1], np.int64)], "column"),
                g.const("x", knots_x[:-1]),
            ],
            "offsets",
        )
        ramps = g.op(
            "Min",
            [g.op("Max", [offsets, g.const("floor", 0.0)], "ramp"), g.const("width", widths)],
            "ramps",
        )
        rise = g.op("MatMul", [ramps, g.const("slope", slopes)], "rise")
        probabilities.append(as_float32(g.op("Add", [rise, start], "p")))
    total = g.op("Sum", probabilities, "total")
    mean = g.op("Div", [total, g.const("folds", float(len(folds)))], "mean")
    g.nodes.append(helper.make_node("Cast", [mean], [OUTPUT_NAME], name="probability", to=single))
    graph = helper.make_graph(
        g.nodes,
        "bastion_head",
        [helper.make_tensor_value_info(INPUT_NAME, single, [None, head.feature_dim])],
        [helper.make_tensor_value_info(OUTPUT_NAME, single, ["N"])],
        initializer=g.initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET[""])])
    model.ir_version = IR_VERSION
    return model


def _positive_output(model: onnx.ModelProto) -> None:
    """Replace the graph's outputs with the positive column of the class probabilities."""
    graph = model.graph
    names = [o.name for o in graph.output]
    if _PROBABILITIES not in names:
        raise RuntimeError(f"skl2onnx gave outputs {names}, expected {_PROBABILITIES!r}")
    index = "bastion_positive_index"
    graph.initializer.append(helper.make_tensor(index, TensorProto.INT64, [], [1]))
    graph.node.append(
        helper.make_node(
            "Gather", [_PROBABILITIES, index], [OUTPUT_NAME], axis=1, name="positive_column"
        )
    )
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["N"]))


def _prune(model: onnx.ModelProto) -> None:
    """Drop nodes and initializers the outputs do not depend on (the label branch)."""
    graph = model.graph
    needed = {o.name for o in graph.output}
    kept = []
    for node in reversed(graph.node):
        if any(out in needed for out in node.output):
            kept.append(node)
            needed.update(i for i in node.input if i)
    kept.reverse()
    del graph.node[:]
    graph.node.extend(kept)
    initializers = [t for t in graph.initializer if t.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    values = [v for v in graph.value_info if v.name in needed]
    del graph.value_info[:]
    graph.value_info.extend(values)
