"""The importer's operators beyond the first set: elementwise functions (Erf, Exp, Log,
Sqrt, Abs, Softplus, Softsign, Selu, ...), comparisons and Where, MatMul of two tensors,
Resize and Upsample, Min/Max/Sum/Mean with constants, more reductions; and the layout a
cnnkit-exported file declares. Each is compared with onnx's reference evaluator, and each
new differentiable layer has a float64 finite-difference gradient check."""

from __future__ import annotations

import math

import numpy as np
import pytest
from gradcheck import check_gradients

import cnnkit
from cnnkit import layers
from cnnkit.autograd import Tensor

onnx = pytest.importorskip("onnx")
from onnx import TensorProto  # noqa: E402
from onnx import helper as h  # noqa: E402
from onnx import numpy_helper as nh  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

import cnnkit.onnx  # noqa: E402
from cnnkit.onnx import _layers as ol  # noqa: E402

RNG = np.random.default_rng(0)


def graph_model(nodes, inputs, outputs, inits=(), opset=17):
    """A model of ``nodes``; ``inputs``/``outputs`` are (name, shape) with the batch "N"."""
    model = h.make_model(
        h.make_graph(
            nodes,
            "g",
            [h.make_tensor_value_info(n, TensorProto.FLOAT, ["N", *s]) for n, s in inputs],
            [h.make_tensor_value_info(n, TensorProto.FLOAT, None) for n, s in outputs],
            [nh.from_array(np.asarray(a), n) for n, a in inits],
        ),
        opset_imports=[h.make_opsetid("", opset)],
    )
    model.ir_version = 8
    return model


def agree(model, feeds, rtol=1e-5, atol=1e-6):
    """cnnkit's import of ``model`` gives onnx's reference outputs; returns the import."""
    expected = ReferenceEvaluator(model).run(None, feeds)
    imported = cnnkit.onnx.load_model(model.SerializeToString())
    got = imported.predict(list(feeds.values()) if len(feeds) > 1 else next(iter(feeds.values())),
                           verbose=0)  # fmt: skip
    got = got if isinstance(got, list) else [got]
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_allclose(g, e, rtol=rtol, atol=atol)
    return imported


# -- elementwise ---------------------------------------------------------------------------------
UNARY = {
    "Erf": {},
    "Exp": {},
    "Log": {},
    "Sqrt": {},
    "Abs": {},
    "Reciprocal": {},
    "Softplus": {},
    "Softsign": {},
    "Selu": {},
    "Mish": {},
    "ThresholdedRelu": {"alpha": 0.3},
}


@pytest.mark.parametrize("op", sorted(UNARY))
def test_unary_operators_match_the_reference(op):
    x = RNG.standard_normal((3, 4, 5)).astype(np.float32) * 2
    if op in ("Log", "Sqrt", "Reciprocal"):
        x = np.abs(x) + 0.1
    model = graph_model([h.make_node(op, ["x"], ["y"], **UNARY[op])], [("x", (4, 5))], [("y", 0)],
                        opset=18)  # fmt: skip
    agree(model, {"x": x})


def test_selu_with_its_own_constants_and_gelu_tanh():
    x = RNG.standard_normal((2, 6)).astype(np.float32) * 3
    nodes = [
        h.make_node("Selu", ["x"], ["s"], alpha=1.5, gamma=2.0),
        h.make_node("Gelu", ["s"], ["y"], approximate="tanh"),
        h.make_node("Gelu", ["x"], ["z"]),
    ]
    model = graph_model(nodes, [("x", (6,))], [("y", 0), ("z", 0)], opset=20)
    imported = agree(model, {"x": x})
    kinds = {getattr(layer, "function", None) for layer in imported.layers}
    assert {"selu", "gelu_tanh"} <= kinds


def test_erf_float32_is_within_two_ulp_everywhere():
    x = np.concatenate([np.linspace(-6, 6, 20001), [0.0, 1e-30, -1e-8, 0.4999, 0.5]])
    x = x.astype(np.float32)
    exact = np.array([math.erf(float(v)) for v in x])
    got = ol._erf_values(x)
    assert got.dtype == np.float32
    ulp = np.spacing(np.abs(exact).astype(np.float32)).astype(np.float64)
    assert np.all(np.abs(got - exact) <= 2 * np.maximum(ulp, 1e-45))


@pytest.mark.parametrize(
    "function,alpha,beta,positive",
    [
        ("erf", None, None, False),
        ("exp", None, None, False),
        ("log", None, None, True),
        ("sqrt", None, None, True),
        ("abs", None, None, False),
        ("reciprocal", None, None, True),
        ("softplus", None, None, False),
        ("softsign", None, None, False),
        ("selu", 1.3, 0.8, False),
        ("thresholded_relu", 0.2, None, False),
        ("gelu_tanh", None, None, False),
    ],
)
def test_elementwise_gradients(function, alpha, beta, positive):
    layer = ol.ElementwiseUnary(function, alpha=alpha, beta=beta, dtype="float64")
    x = RNG.standard_normal((2, 3, 4))
    # Away from the kinks (0 for abs, alpha for the threshold) and from 0 where undefined.
    x = np.where(np.abs(x) < 0.05, 0.3, x)
    x = np.where(np.abs(x - 0.2) < 0.05, 0.5, x)
    if positive:
        x = np.abs(x) + 0.2
    check_gradients(lambda t: layer(t), [x])


def test_add_then_relu_fuses_only_when_the_relu_alone_reads_the_sum(tmp_path):
    """A residual block's Add and the Relu reading it become one AddReLU layer with the
    bits of the separate pair; a second reader of the sum (a graph output) keeps them
    apart."""
    a, b = (
        RNG.standard_normal((2, 3, 4, 5)).astype(np.float32),
        RNG.standard_normal((2, 3, 4, 5)).astype(np.float32),
    )
    nodes = [h.make_node("Add", ["a", "b"], ["s"]), h.make_node("Relu", ["s"], ["y"])]
    ins = [("a", (3, 4, 5)), ("b", (3, 4, 5))]
    fused = agree(graph_model(nodes, ins, [("y", None)]), {"a": a, "b": b})
    kinds = [type(layer).__name__ for layer in fused.layers]
    assert "AddReLU" in kinds and "ReLU" not in kinds and "Add" not in kinds
    kept = agree(graph_model(nodes, ins, [("y", None), ("s", None)]), {"a": a, "b": b})
    assert "AddReLU" not in [type(layer).__name__ for layer in kept.layers]
    np.testing.assert_array_equal(fused.predict([a, b], verbose=0),
                                  kept.predict([a, b], verbose=0)[0])  # fmt: skip
    # and it exports again (as Add + Relu), coming back with the same bits
    path = str(tmp_path / "add_relu.onnx")
    cnnkit.onnx.save_model(fused, path)
    back = cnnkit.onnx.load_model(path)
    np.testing.assert_array_equal(back.predict([a, b], verbose=0),
                                  fused.predict([a, b], verbose=0))  # fmt: skip


def test_add_relu_gradient_reaches_both_inputs():
    layer = ol.AddReLU(dtype="float64")
    p, q = RNG.standard_normal((2, 3, 4)), RNG.standard_normal((2, 3, 4))
    q = np.where(np.abs(p + q) < 0.05, q + 0.2, q)  # no sum near the kink
    check_gradients(lambda x, y: layer([x, y]), [p, q])
    with pytest.raises(ValueError, match="2 inputs of equal shapes"):
        layer([Tensor(p), Tensor(q[:, :1])])


# -- comparisons and Where -----------------------------------------------------------------------
def test_greater_where_and_cast_of_a_mask(tmp_path):
    x = RNG.standard_normal((3, 2, 4, 4)).astype(np.float32)
    nodes = [
        h.make_node("Greater", ["x", "t"], ["above"]),
        h.make_node("Sub", ["x", "t"], ["shifted"]),
        h.make_node("Mul", ["shifted", "k"], ["below"]),
        h.make_node("Where", ["above", "x", "below"], ["y"]),
        h.make_node("LessOrEqual", ["x", "y"], ["le"]),
        h.make_node("Cast", ["le"], ["lef"], to=TensorProto.FLOAT),
        h.make_node("Where", ["above", "c", "x"], ["z"]),  # a constant branch
        h.make_node("Cast", ["x"], ["nz"], to=TensorProto.BOOL),
        h.make_node("Where", ["nz", "x", "c"], ["w"]),
    ]
    inits = [
        ("t", np.float32(0.2)),
        ("k", np.float32(0.1)),
        ("c", RNG.standard_normal((2, 1, 1)).astype(np.float32)),
    ]
    outs = [("y", 0), ("lef", 0), ("z", 0), ("w", 0)]
    model = graph_model(nodes, [("x", (2, 4, 4))], outs, inits)
    imported = agree(model, {"x": x})
    # Channels-last inside: the same model with NHWC inputs and outputs.
    nhwc = cnnkit.onnx.load_model(model.SerializeToString(), input_layout="NHWC")
    # Saved and loaded by cnnkit itself (the layers are registered, their constants weights).
    nhwc.save(tmp_path / "m.cnnkit")
    again = cnnkit.load_model(tmp_path / "m.cnnkit")
    for got, want in zip(again.predict(np.moveaxis(x, 1, -1), verbose=0),
                         nhwc.predict(np.moveaxis(x, 1, -1), verbose=0), strict=True):  # fmt: skip
        np.testing.assert_array_equal(got, want)
    got = nhwc.predict(np.moveaxis(x, 1, -1), verbose=0)
    want = imported.predict(x, verbose=0)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(np.moveaxis(g, -1, 1), w)


def test_select_gradients_reach_both_branches_and_not_the_condition():
    layer = ol.Select([None, None, None], dtype="float64")
    cond = (RNG.standard_normal((2, 3, 4)) > 0).astype(np.float64)
    a, b = RNG.standard_normal((2, 3, 4)), RNG.standard_normal((2, 1, 4))
    check_gradients(lambda c, p, q: layer([c, p, q]), [cond, a, b])
    with_constant = ol.Select([None, [1, 3, 1], None], dtype="float64")
    with_constant([Tensor(cond), Tensor(b)])
    with_constant.set_weights([RNG.standard_normal((1, 3, 1))])
    check_gradients(lambda c, q: with_constant([c, q]), [cond, b])


# -- MatMul of tensors ---------------------------------------------------------------------------
def test_matmul_of_two_tensors_and_its_gradient():
    a = RNG.standard_normal((2, 3, 4, 5)).astype(np.float32)
    b = RNG.standard_normal((2, 3, 5, 2)).astype(np.float32)
    model = graph_model(
        [h.make_node("MatMul", ["a", "b"], ["y"])], [("a", (3, 4, 5)), ("b", (3, 5, 2))], [("y", 0)]
    )
    agree(model, {"a": a, "b": b})
    layer = ol.MatMul(dtype="float64")
    check_gradients(lambda p, q: layer([p, q]), [a[:, 0].astype(np.float64), b[:, 0].astype(float)])


def test_matmul_that_would_contract_the_batch_is_refused():
    model = graph_model([h.make_node("MatMul", ["a", "b"], ["y"], name="mm")],
                        [("a", (5,)), ("b", (5,))], [("y", 0)])  # fmt: skip
    with pytest.raises(NotImplementedError, match=r"'MatMul' \(node 'mm', inputs \['a', 'b'\]\)"):
        cnnkit.onnx.load_model(model.SerializeToString())


# -- Resize and Upsample -------------------------------------------------------------------------
RESIZE_CASES = [
    ({"mode": "nearest"}, [1, 1, 2.0, 1.5]),
    ({"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"},
     [1, 1, 3.0, 2.0]),
    ({"mode": "nearest", "coordinate_transformation_mode": "align_corners",
      "nearest_mode": "round_prefer_ceil"}, [1, 1, 0.6, 1.7]),
    ({"mode": "nearest", "nearest_mode": "ceil"}, [1, 1, 0.5, 2.5]),
    ({"mode": "linear"}, [1, 1, 2.0, 2.0]),
    ({"mode": "linear", "coordinate_transformation_mode": "align_corners"}, [1, 1, 1.5, 0.8]),
    ({"mode": "linear", "coordinate_transformation_mode": "pytorch_half_pixel"}, [1, 1, 0.25, 3]),
    ({"mode": "linear", "coordinate_transformation_mode": "asymmetric"}, [1, 1, 1.6, 2.4]),
    ({"mode": "linear", "antialias": 1}, [1, 1, 0.5, 0.7]),
    ({"mode": "cubic"}, [1, 1, 1.7, 0.6]),
    ({"mode": "cubic", "cubic_coeff_a": -0.5, "exclude_outside": 1}, [1, 1, 2.0, 1.3]),
    ({"mode": "cubic", "antialias": 1, "coordinate_transformation_mode": "half_pixel_symmetric"},
     [1, 1, 0.6, 1.4]),
]  # fmt: skip


@pytest.mark.parametrize("attrs,scales", RESIZE_CASES)
def test_resize_by_scales_matches_the_reference(attrs, scales):
    x = RNG.standard_normal((2, 3, 5, 6)).astype(np.float32)
    node = h.make_node("Resize", ["x", "", "scales"], ["y"], **attrs)
    model = graph_model([node], [("x", (3, 5, 6))], [("y", 0)],
                        [("scales", np.asarray(scales, np.float32))], opset=19)  # fmt: skip
    agree(model, {"x": x}, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("policy", ["stretch", "not_larger", "not_smaller"])
def test_resize_by_sizes_on_some_axes(policy):
    x = RNG.standard_normal((2, 3, 5, 6)).astype(np.float32)
    node = h.make_node("Resize", ["x", "", "", "sizes"], ["y"], mode="linear", axes=[2, 3],
                       keep_aspect_ratio_policy=policy)  # fmt: skip
    model = graph_model([node], [("x", (3, 5, 6))], [("y", 0)],
                        [("sizes", np.array([8, 4], np.int64))], opset=18)  # fmt: skip
    agree(model, {"x": x}, rtol=1e-4, atol=1e-5)


def test_upsample_of_old_opsets():
    x = RNG.standard_normal((2, 3, 4, 5)).astype(np.float32)
    scales = np.array([1, 1, 2, 3], np.float32)
    node = h.make_node("Upsample", ["x", "scales"], ["y"], mode="nearest")
    model = graph_model([node], [("x", (3, 4, 5))], [("y", 0)], [("scales", scales)], opset=9)
    agree(model, {"x": x})
    # Linear: the x / scale rule of onnxruntime's Upsample.
    node = h.make_node("Upsample", ["x", "scales"], ["y"], mode="linear")
    model = graph_model([node], [("x", (3, 4, 5))], [("y", 0)], [("scales", scales)], opset=9)
    got = cnnkit.onnx.load_model(model.SerializeToString()).predict(x, verbose=0)
    src = np.arange(8) / 2
    lo = np.floor(src).astype(int)
    hi = np.minimum(lo + 1, 3)
    rows = x[:, :, lo] * (1 - (src - lo))[:, None] + x[:, :, hi] * (src - lo)[:, None]
    np.testing.assert_allclose(got[..., ::3], rows, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "mode,options",
    [
        ("nearest", {"coordinates": "half_pixel"}),
        ("linear", {"coordinates": "align_corners"}),
        ("linear", {"coordinates": "half_pixel", "antialias": True}),
        ("cubic", {"coordinates": "pytorch_half_pixel", "exclude_outside": True}),
    ],
)
def test_resize_gradients(mode, options):
    layer = ol.Resize([1, 2], [5, 3], [1.7, 0.6], mode=mode, dtype="float64", **options)
    check_gradients(lambda t: layer(t), [RNG.standard_normal((2, 3, 5, 2))])


def test_resize_crop_mode_is_refused_with_the_node_named():
    node = h.make_node("Resize", ["x", "roi", "scales"], ["y"], name="crop",
                       coordinate_transformation_mode="tf_crop_and_resize")  # fmt: skip
    inits = [("roi", np.array([0, 0, 0.1, 0.1, 1, 1, 0.9, 0.9], np.float32)),
             ("scales", np.array([1, 1, 2, 2], np.float32))]  # fmt: skip
    model = graph_model([node], [("x", (3, 4, 4))], [("y", 0)], inits)
    with pytest.raises(NotImplementedError, match=r"'Resize' \(node 'crop'.*tf_crop_and_resize"):
        cnnkit.onnx.load_model(model.SerializeToString())


# -- n-ary with constants, reductions -----------------------------------------------------------
def test_min_max_sum_mean_with_constants_and_more_reductions():
    x = RNG.standard_normal((2, 3, 4, 4)).astype(np.float32)
    y = RNG.standard_normal((2, 3, 4, 4)).astype(np.float32)
    c = RNG.standard_normal((3, 1, 1)).astype(np.float32)
    nodes = [
        h.make_node("Max", ["x", "c", "eps"], ["m"]),
        h.make_node("Min", ["m", "y"], ["n"]),
        h.make_node("Mean", ["n", "c", "y"], ["mean"]),
        h.make_node("Sum", ["mean", "eps"], ["s"]),
        h.make_node("ReduceL2", ["s", "axes"], ["l2"], keepdims=1),
        h.make_node("ReduceMin", ["s", "axes"], ["lo"], keepdims=0),
        h.make_node("ReduceSumSquare", ["s", "axes"], ["sq"], keepdims=1),
        h.make_node("ReduceL1", ["s", "c_axis"], ["l1"], keepdims=0),
        h.make_node("Div", ["s", "l2"], ["normed"]),
    ]
    inits = [("c", c), ("eps", np.float32(0.1)), ("axes", np.array([2, 3], np.int64)),
             ("c_axis", np.array([1], np.int64))]  # fmt: skip
    outs = [("normed", 0), ("lo", 0), ("sq", 0), ("l1", 0)]
    agree(graph_model(nodes, [("x", (3, 4, 4)), ("y", (3, 4, 4))], outs, inits, opset=18),
          {"x": x, "y": y})  # fmt: skip


@pytest.mark.parametrize("kind", ["min", "sum_square", "l1", "l2"])
def test_reduction_gradients(kind):
    layer = ol.Reduce(kind, [1, 2], keepdims=False, dtype="float64")
    x = RNG.standard_normal((2, 3, 4))
    x = np.where(np.abs(x) < 0.05, 0.3, x)  # l1's kink
    check_gradients(lambda t: layer(t), [x])


# -- the layout of cnnkit's own files -----------------------------------------------------------
def _convnet():
    inputs = layers.Input((6, 7, 3))
    maps = layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    pooled = layers.MaxPooling2D()(maps)
    logits = layers.Dense(2)(layers.Flatten()(pooled))
    return cnnkit.Model(inputs, [logits, pooled], seed=0)


def test_a_default_nhwc_export_round_trips_without_arguments(tmp_path):
    model = _convnet()
    x = RNG.standard_normal((3, 6, 7, 3)).astype(np.float32)
    expected = model.predict(x, verbose=0)
    path = tmp_path / "m.onnx"
    cnnkit.onnx.save_model(model, path)  # layout="NHWC", the default
    back = cnnkit.onnx.load_model(path)
    for got, want in zip(back.predict(x, verbose=0), expected, strict=True):
        np.testing.assert_array_equal(got, want)
    # No transposing layer: the channels-last input reaches the convolution as it is.
    assert not any(isinstance(layer, layers.Permute) for layer in back.layers)
    # Saying so explicitly is the same; asking for NCHW transposes at the boundary only.
    same = cnnkit.onnx.load_model(path, input_layout="NHWC")
    np.testing.assert_array_equal(same.predict(x, verbose=0)[1], expected[1])
    nchw = cnnkit.onnx.load_model(path, input_layout="NCHW")
    logits, maps = nchw.predict(np.moveaxis(x, -1, 1), verbose=0)
    np.testing.assert_array_equal(logits, expected[0])
    np.testing.assert_array_equal(maps, np.moveaxis(expected[1], -1, 1))


def test_an_nchw_export_still_takes_channels_first_by_default(tmp_path):
    model = _convnet()
    x = RNG.standard_normal((2, 6, 7, 3)).astype(np.float32)
    path = tmp_path / "m.onnx"
    cnnkit.onnx.save_model(model, path, layout="NCHW")
    logits, maps = cnnkit.onnx.load_model(path).predict(np.moveaxis(x, -1, 1), verbose=0)
    expected = model.predict(x, verbose=0)
    np.testing.assert_array_equal(logits, expected[0])
    np.testing.assert_array_equal(maps, np.moveaxis(expected[1], -1, 1))


def test_a_bad_layout_metadata_value_is_a_value_error():
    model = graph_model([h.make_node("Relu", ["x"], ["y"])], [("x", (3, 4, 4))], [("y", 0)])
    h.set_model_props(model, {"cnnkit.layout": "NCWH"})
    with pytest.raises(ValueError, match=r"cnnkit\.layout='NCWH'"):
        cnnkit.onnx.load_model(model.SerializeToString())
    with pytest.raises(ValueError, match="input_layout must be 'NCHW', 'NHWC' or None"):
        cnnkit.onnx.load_model(model.SerializeToString(), input_layout="CHW")


# -- the new layers export again -----------------------------------------------------------------
def test_an_imported_network_with_the_new_layers_exports_again(tmp_path):
    """Each new layer's ONNX mapping runs in onnxruntime with cnnkit's outputs and imports
    back (test_onnx_export.check), in both layouts."""
    from test_onnx_export import check

    nodes = [
        h.make_node(
            "Resize",
            ["x", "", "scales"],
            ["up"],
            mode="cubic",
            coordinate_transformation_mode="pytorch_half_pixel",
            exclude_outside=1,
        ),
        h.make_node(
            "Resize",
            ["up", "", "", "sizes"],
            ["down"],
            mode="linear",
            coordinate_transformation_mode="align_corners",
            axes=[2, 3],
        ),
        h.make_node(
            "Resize",
            ["down", "", "half"],
            ["near"],
            mode="nearest",
            nearest_mode="round_prefer_ceil",
        ),
        h.make_node("Greater", ["near", "t"], ["above"]),
        h.make_node("Less", ["near", "down2"], ["less"]),
        h.make_node("Where", ["above", "near", "c"], ["w"]),
        h.make_node("Selu", ["w"], ["selu"], alpha=1.2, gamma=0.9),
        h.make_node("Gelu", ["selu"], ["gelu"], approximate="tanh"),
        h.make_node("Erf", ["gelu"], ["erf"]),
        h.make_node("Abs", ["erf"], ["abs"]),
        h.make_node("Add", ["abs", "t"], ["pos"]),
        h.make_node("Sqrt", ["pos"], ["sqrt"]),
        h.make_node("Log", ["sqrt"], ["log"]),
        h.make_node("Reciprocal", ["pos"], ["rec"]),
        h.make_node("ThresholdedRelu", ["rec"], ["thr"], alpha=0.5),
        h.make_node("Max", ["thr", "log", "less"], ["mx"]),
        h.make_node("ReduceL2", ["mx", "axes"], ["l2"], keepdims=1),
        h.make_node("Div", ["mx", "l2"], ["normed"]),
        h.make_node("Transpose", ["normed"], ["rows"], perm=[0, 1, 3, 2]),
        h.make_node("MatMul", ["normed", "rows"], ["gram"]),
        h.make_node("Resize", ["x", "", "down_scales"], ["down2"], mode="nearest"),
    ]
    # The last node comes first in the graph's order.
    nodes = [nodes[-1], *nodes[:-1]]
    inits = [
        ("scales", np.array([1, 1, 2, 1.5], np.float32)),
        ("sizes", np.array([5, 4], np.int64)),
        ("half", np.array([1, 1, 1, 1], np.float32)),
        ("down_scales", np.array([1, 1, 1, 1], np.float32)),
        ("t", np.float32(0.1)),
        ("c", RNG.standard_normal((3, 1, 1)).astype(np.float32)),
        ("axes", np.array([2, 3], np.int64)),
    ]
    model = graph_model(nodes, [("x", (3, 5, 4))], [("gram", 0), ("less", 0)], inits, opset=20)
    x = RNG.standard_normal((2, 3, 5, 4)).astype(np.float32)
    imported = agree(model, {"x": x}, rtol=1e-4, atol=1e-5)
    kinds = {type(layer).__name__ for layer in imported.layers}
    assert {"Resize", "Select", "MatMul", "ElementwiseUnary", "Reduce"} <= kinds
    nhwc = cnnkit.onnx.load_model(model.SerializeToString(), input_layout="NHWC")
    # Saved and loaded by cnnkit itself (the layers are registered, their constants weights).
    nhwc.save(tmp_path / "m.cnnkit")
    again = cnnkit.load_model(tmp_path / "m.cnnkit")
    for got, want in zip(again.predict(np.moveaxis(x, 1, -1), verbose=0),
                         nhwc.predict(np.moveaxis(x, 1, -1), verbose=0), strict=True):  # fmt: skip
        np.testing.assert_array_equal(got, want)
    for opset in (19, 20):  # GELU's tanh form written out, then ONNX's own
        check(nhwc, tmp_path, x=[np.moveaxis(x, 1, -1)], opset=opset)
