"""cnnkit.onnx.load_model on small graphs written with onnx.helper: layouts, the model it
returns, and every rejection path."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import cnnkit  # noqa: E402
import cnnkit.onnx  # noqa: E402
from cnnkit import reference  # noqa: E402

RNG = np.random.default_rng(0)


def _model(nodes, inputs, outputs, initializers=(), opset=17) -> bytes:
    graph = helper.make_graph(list(nodes), "g", list(inputs), list(outputs), list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    return model.SerializeToString()


def _init(name: str, array: np.ndarray):
    return numpy_helper.from_array(np.asarray(array), name)


def _small_cnn(batch="N") -> tuple[bytes, dict[str, np.ndarray]]:
    """conv -> relu -> maxpool -> flatten -> gemm, with a residual add of a constant."""
    w = RNG.standard_normal((4, 3, 3, 3)).astype(np.float32)
    b = RNG.standard_normal(4).astype(np.float32)
    fc = RNG.standard_normal((5, 4 * 3 * 3)).astype(np.float32)
    shift = RNG.standard_normal((1, 4, 1, 1)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["c", "shift"], ["s"], name="shift"),
        helper.make_node("Relu", ["s"], ["r"], name="relu1"),
        helper.make_node(
            "MaxPool", ["r"], ["p"], name="pool5", kernel_shape=[2, 2], strides=[2, 2]
        ),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "fc"], ["y"], name="fc", transB=1),
    ]
    data = _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 6, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 5])],
        [_init("w", w), _init("b", b), _init("fc", fc), _init("shift", shift)],
    )
    return data, {"w": w, "b": b, "fc": fc, "shift": shift}


def _expected(x: np.ndarray, p: dict[str, np.ndarray]) -> np.ndarray:
    nhwc = x.transpose(0, 2, 3, 1).astype(np.float64)
    c = reference.conv(nhwc, p["w"].transpose(2, 3, 1, 0).astype(np.float64), p["b"], padding=1)
    r = np.maximum(c + p["shift"].reshape(1, 1, 1, 4), 0)
    pooled = reference.max_pool(r, 2)
    flat = pooled.transpose(0, 3, 1, 2).reshape(len(x), -1)  # ONNX's channel-major order
    return flat @ p["fc"].T


def _conv_relu(second_reader: str | None) -> bytes:
    """conv -> relu -> gemm -> relu; with ``second_reader`` the conv's output is also read
    by an Add (``"add"``), through an Identity alias (``"alias"``) or is a graph output
    (``"output"``)."""
    rng = np.random.default_rng(1)  # the same weights for every variant
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    fc = rng.standard_normal((5, 4 * 6 * 6)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv1", pads=[1, 1, 1, 1])]
    relu_input = "c"
    if second_reader == "alias":
        nodes.append(helper.make_node("Identity", ["c"], ["i"], name="alias"))
        relu_input = "i"
    nodes += [
        helper.make_node("Relu", [relu_input], ["r"], name="relu1"),
        helper.make_node("Flatten", ["r"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "fc"], ["g"], name="fc", transB=1),
        helper.make_node("Relu", ["g"], ["y"], name="relu2"),
    ]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])]
    if second_reader in ("add", "alias"):
        nodes.append(helper.make_node("Add", ["c", "r"], ["s"], name="add"))
        outputs.append(helper.make_tensor_value_info("s", TensorProto.FLOAT, ["N", 4, 6, 6]))
    if second_reader == "output":
        outputs.append(helper.make_tensor_value_info("c", TensorProto.FLOAT, ["N", 4, 6, 6]))
    return _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 6, 6])],
        outputs,
        [_init("w", w), _init("fc", fc)],
    )


def test_relu_after_conv_or_gemm_is_fused_only_when_nothing_else_reads_its_input():
    """A Relu that alone reads a Conv's or Gemm's output becomes that layer's fused
    activation (no ReLU layer, the same bits); with another reader of the unrectified
    values it stays a layer of its own."""
    x = RNG.standard_normal((2, 3, 6, 6)).astype(np.float32)
    model = cnnkit.onnx.load_model(_conv_relu(None))
    names = [layer.name for layer in model.layers]
    assert "relu1" not in names and "relu2" not in names
    assert model.get_layer("conv1").activation == "relu"
    assert model.get_layer("fc").activation == "relu"
    conv = model.get_layer("conv1")
    nhwc = x.transpose(0, 2, 3, 1)
    raw = cnnkit.ops.conv(nhwc, conv.get_weights()[0], padding=1)
    want = (
        np.maximum(raw, 0).transpose(0, 3, 1, 2).reshape(2, -1)
        @ model.get_layer("fc").get_weights()[0]
    )
    np.testing.assert_allclose(np.asarray(model(x).data), np.maximum(want, 0), rtol=1e-5, atol=1e-5)
    for reader in ("add", "alias", "output"):
        kept = cnnkit.onnx.load_model(_conv_relu(reader))
        assert "relu1" in [layer.name for layer in kept.layers], reader
        assert kept.get_layer("conv1").activation == "linear", reader
        assert kept.get_layer("fc").activation == "relu", reader
        got = kept(x)
        np.testing.assert_array_equal(np.asarray(got[0].data), np.asarray(model(x).data))


def _depthwise_relu6(
    second_reader: bool, high: float = 6.0, opset: int = 17, op: str = "Clip"
) -> bytes:
    """conv -> Clip(0, high) -> depthwise conv (group 4) -> Clip(0, high), MobileNet's
    pattern, or another one-input activation ``op`` (Relu, HardSwish: MobileNet v3's) in
    the Clips' places; with ``second_reader`` the first conv's output is also a graph
    output."""
    rng = np.random.default_rng(2)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    dw = rng.standard_normal((4, 1, 3, 3)).astype(np.float32)
    clip = op == "Clip"
    bounds = ["low", "high"] if clip and opset >= 11 else []
    attrs = {"min": 0.0, "max": high} if clip and opset < 11 else {}
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node(op, ["c", *bounds], ["r"], name="clip1", **attrs),
        helper.make_node("Conv", ["r", "dw"], ["d"], name="dw1", pads=[1, 1, 1, 1], group=4),
        helper.make_node(op, ["d", *bounds], ["y"], name="clip2", **attrs),
    ]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 6, 6])]
    if second_reader:
        outputs.append(helper.make_tensor_value_info("c", TensorProto.FLOAT, ["N", 4, 6, 6]))
    inits = [_init("w", w), _init("dw", dw)]
    if bounds:
        inits += [_init("low", np.float32(0)), _init("high", np.float32(high))]
    return _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 6, 6])],
        outputs,
        inits,
        opset=opset,
    )


@pytest.mark.parametrize("opset", [9, 17])
def test_relu6_after_conv_or_depthwise_is_fused_only_when_nothing_else_reads_its_input(opset):
    """A Clip to [0, 6] that alone reads a Conv's output becomes the layer's activation
    "relu6", applied over its fresh output in place: no ReLU layer and the bits of the
    separate one. With another reader, or other bounds, the Clip stays a layer."""
    x = 4 * RNG.standard_normal((2, 3, 6, 6)).astype(np.float32)  # values beyond 6 too
    fused = cnnkit.onnx.load_model(_depthwise_relu6(False, opset=opset))
    names = [layer.name for layer in fused.layers]
    assert "clip1" not in names and "clip2" not in names
    assert fused.get_layer("conv1").activation == "relu6"
    assert fused.get_layer("dw1").activation == "relu6"
    kept = cnnkit.onnx.load_model(_depthwise_relu6(True, opset=opset))
    assert "clip1" in [layer.name for layer in kept.layers]
    assert kept.get_layer("conv1").activation == "linear"
    y = np.asarray(fused(x).data)
    assert y.min() == 0 and y.max() == 6
    np.testing.assert_array_equal(np.asarray(kept(x)[0].data), y)
    other = cnnkit.onnx.load_model(_depthwise_relu6(False, high=5.0, opset=opset))
    assert "clip1" in [layer.name for layer in other.layers]
    assert other.get_layer("conv1").activation == "linear"
    assert np.asarray(other(x).data).max() == 5
    # The fused activation's gradient is ReLU6's: through the in-place output's mask.
    with_grad = cnnkit.onnx.load_model(_depthwise_relu6(False, opset=opset))
    t = cnnkit.autograd.Tensor(x, requires_grad=True)
    out = with_grad(t)
    (out * out).sum().backward()
    t2 = cnnkit.autograd.Tensor(x, requires_grad=True)
    out2 = kept(t2)[0]
    (out2 * out2).sum().backward()
    np.testing.assert_array_equal(t.grad, t2.grad)


@pytest.mark.parametrize(("op", "activation"), [("HardSwish", "hard_swish"), ("Relu", "relu")])
def test_activation_after_conv_or_depthwise_is_fused_only_when_nothing_else_reads_its_input(
    op, activation
):
    """A HardSwish or Relu that alone reads a Conv's output (depthwise ones included)
    becomes the layer's activation: no layer of its own, and the bits of the separate
    one, in the inference plan (the kernel's fused store) and on the tape (hard_swish as
    an op of its own there, since its gradient needs its input), gradients included."""
    x = 4 * RNG.standard_normal((2, 3, 6, 6)).astype(np.float32)
    fused = cnnkit.onnx.load_model(_depthwise_relu6(False, op=op))
    names = [layer.name for layer in fused.layers]
    assert "clip1" not in names and "clip2" not in names
    assert fused.get_layer("conv1").activation == activation
    assert fused.get_layer("dw1").activation == activation
    kept = cnnkit.onnx.load_model(_depthwise_relu6(True, op=op))
    assert "clip1" in [layer.name for layer in kept.layers]
    assert kept.get_layer("conv1").activation == "linear"
    with cnnkit.autograd.no_grad():
        y = np.asarray(fused(x).data)
        np.testing.assert_array_equal(np.asarray(kept(x)[0].data), y)
    results = []
    for model, pick in ((fused, lambda out: out), (kept, lambda out: out[0])):
        t = cnnkit.autograd.Tensor(x, requires_grad=True)
        out = pick(model(t))
        (out * out).sum().backward()
        results.append((np.asarray(out.data), t.grad))
    np.testing.assert_array_equal(results[0][0], y)
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])


def _conv_bn_relu(extra_reader: bool) -> tuple[bytes, dict[str, np.ndarray]]:
    """Conv (no bias, as torch writes it before BN) -> BatchNormalization -> Relu, a
    ResNet block as an exporter that does not fold BN writes it; optionally a second
    reader of the Conv's output (a graph output), which keeps the BN a layer."""
    rng = np.random.default_rng(5)  # the same weights for both graphs
    p = {
        "w": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
        "gamma": rng.uniform(0.5, 2, 4).astype(np.float32),
        "beta": rng.standard_normal(4).astype(np.float32),
        "mean": rng.standard_normal(4).astype(np.float32),
        "var": rng.uniform(0.1, 3, 4).astype(np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node(
            "BatchNormalization",
            ["c", "gamma", "beta", "mean", "var"],
            ["n"],
            name="bn",
            epsilon=1e-3,
        ),
        helper.make_node("Relu", ["n"], ["y"], name="relu"),
    ]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 5, 5])]
    if extra_reader:
        outputs.append(helper.make_tensor_value_info("c", TensorProto.FLOAT, ["N", 4, 5, 5]))
    x_info = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 5, 5])
    return _model(nodes, [x_info], outputs, [_init(k, v) for k, v in p.items()]), p


def test_batch_norm_that_alone_reads_a_conv_is_folded_into_it():
    """The Conv gets the BN's scale in its kernel and its shift as a bias; the Relu after
    still fuses into the Conv; the result is the unfolded graph's up to rounding. With
    another reader of the Conv's output the BN stays a layer of its own."""
    data, p = _conv_bn_relu(False)
    x = RNG.standard_normal((2, 3, 5, 5)).astype(np.float32)
    c = reference.conv(x.transpose(0, 2, 3, 1).astype(np.float64), p["w"].transpose(2, 3, 1, 0),
                       padding=1)  # fmt: skip
    s = p["gamma"] / np.sqrt(p["var"].astype(np.float64) + 1e-3)
    want = np.maximum((c - p["mean"]) * s + p["beta"], 0).transpose(0, 3, 1, 2)
    model = cnnkit.onnx.load_model(data, fold_batch_norm=True)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert "BatchNormalization" not in kinds and "ReLU" not in kinds and kinds.count("Conv2D") == 1
    conv = model.get_layer("conv")
    assert conv.activation == "relu" and conv.use_bias
    np.testing.assert_allclose(np.asarray(model(x).data), want, rtol=1e-5, atol=1e-5)
    unfolded = cnnkit.onnx.load_model(data)
    assert "bn" in [layer.name for layer in unfolded.layers]
    np.testing.assert_allclose(np.asarray(unfolded(x).data), want, rtol=1e-5, atol=1e-5)
    with pytest.raises(TypeError, match="fold_batch_norm must be a bool, got 1"):
        cnnkit.onnx.load_model(data, fold_batch_norm=1)
    kept = cnnkit.onnx.load_model(_conv_bn_relu(True)[0], fold_batch_norm=True)
    assert "bn" in [layer.name for layer in kept.layers]
    assert not kept.get_layer("conv").use_bias
    got = kept(x)
    np.testing.assert_allclose(np.asarray(got[0].data), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(got[1].data), c.transpose(0, 3, 1, 2), rtol=1e-5,
                               atol=1e-5)  # fmt: skip


def test_small_cnn_matches_reference_in_both_layouts():
    data, params = _small_cnn()
    x = RNG.standard_normal((3, 3, 6, 6)).astype(np.float32)
    want = _expected(x, params)
    nchw = cnnkit.onnx.load_model(data)
    np.testing.assert_allclose(np.asarray(nchw(x).data), want, rtol=1e-4, atol=1e-5)
    nhwc = cnnkit.onnx.load_model(data, input_layout="NHWC")
    assert nhwc.input_shape == (None, 6, 6, 3)
    got = np.asarray(nhwc(x.transpose(0, 2, 3, 1)).data)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    names = [layer.name for layer in nchw.layers]
    assert {"conv1", "relu1", "pool5", "fc"} <= set(names)
    assert type(nchw.get_layer("conv1")).__name__ == "Conv2D"
    np.testing.assert_array_equal(
        nchw.get_layer("conv1").get_weights()[0], params["w"].transpose(2, 3, 1, 0)
    )


def test_feature_map_outputs_come_back_in_the_callers_layout():
    w = RNG.standard_normal((2, 3, 1, 1)).astype(np.float32)
    data = _model(
        [helper.make_node("Conv", ["x", "w"], ["y"], name="c")],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 4, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2, 4, 5])],
        [_init("w", w)],
    )
    x = RNG.standard_normal((2, 3, 4, 5)).astype(np.float32)
    want = np.einsum("nchw,oc->nohw", x, w[:, :, 0, 0])
    got = np.asarray(cnnkit.onnx.load_model(data)(x).data)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    got = cnnkit.onnx.load_model(data, input_layout="nhwc")(x.transpose(0, 2, 3, 1))
    np.testing.assert_allclose(np.asarray(got.data), want.transpose(0, 2, 3, 1), rtol=1e-5)


def test_transpose_and_reshape_track_the_layout():
    """A channel shuffle (Reshape to groups, Transpose, Reshape back) between convolutions,
    the batch size taken from Shape as exporters write it."""
    w = RNG.standard_normal((4, 4, 1, 1)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="c1"),
        helper.make_node("Shape", ["c"], ["shape"]),
        helper.make_node("Gather", ["shape", "zero"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "zero1"], ["n1"]),
        helper.make_node("Concat", ["n1", "rest"], ["target"], axis=0),
        helper.make_node("Reshape", ["c", "target"], ["g"], name="split_groups"),
        helper.make_node("Transpose", ["g"], ["t"], perm=[0, 2, 1, 3, 4]),
        helper.make_node("Reshape", ["t", "back"], ["b"], name="merge_groups"),
        helper.make_node("Conv", ["b", "w"], ["y"], name="c2"),
    ]
    data = _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 3, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 3, 3])],
        [
            _init("w", w),
            _init("zero", np.array(0, np.int64)),
            _init("zero1", np.array([0], np.int64)),
            _init("rest", np.array([2, 2, 3, 3], np.int64)),
            _init("back", np.array([0, 4, 3, 3], np.int64)),
        ],
    )
    x = RNG.standard_normal((2, 4, 3, 3)).astype(np.float32)
    m = w[:, :, 0, 0]
    c = np.einsum("nchw,oc->nohw", x, m)
    shuffled = c.reshape(2, 2, 2, 3, 3).transpose(0, 2, 1, 3, 4).reshape(2, 4, 3, 3)
    want = np.einsum("nchw,oc->nohw", shuffled, m)
    got = np.asarray(cnnkit.onnx.load_model(data)(x).data)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_saved_and_loaded_without_change(tmp_path):
    data, _ = _small_cnn()
    model = cnnkit.onnx.load_model(data)
    x = RNG.standard_normal((2, 3, 6, 6)).astype(np.float32)
    path = tmp_path / "m.keras"
    model.save(path)
    again = cnnkit.load_model(path)
    np.testing.assert_array_equal(np.asarray(again(x).data), np.asarray(model(x).data))


def test_fit_fine_tunes_the_imported_weights():
    data, _ = _small_cnn()
    model = cnnkit.onnx.load_model(data)
    model.get_layer("conv1").trainable = False
    frozen = model.get_layer("conv1").get_weights()
    head = model.get_layer("fc").get_weights()[0].copy()
    model.compile(optimizer="sgd", loss="mse")
    x = RNG.standard_normal((4, 3, 6, 6)).astype(np.float32)
    model.fit(x, np.zeros((4, 5), np.float32), epochs=1, batch_size=4, verbose=0)
    for a, b in zip(model.get_layer("conv1").get_weights(), frozen):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(model.get_layer("fc").get_weights()[0], head)


def test_path_and_bytes_give_the_same_model(tmp_path):
    data, _ = _small_cnn(batch=1)  # a fixed batch size of 1 in the file
    path = tmp_path / "m.onnx"
    path.write_bytes(data)
    x = RNG.standard_normal((3, 3, 6, 6)).astype(np.float32)  # other batch sizes still run
    a = cnnkit.onnx.load_model(path)(x)
    b = cnnkit.onnx.load_model(str(path))(x)
    np.testing.assert_array_equal(np.asarray(a.data), np.asarray(b.data))


def test_external_data_is_read_from_beside_the_model(tmp_path):
    data, params = _small_cnn()
    model = onnx.load_from_string(data)
    onnx.save_model(
        model,
        str(tmp_path / "m.onnx"),
        save_as_external_data=True,
        location="m.weights",
        size_threshold=0,
    )
    x = RNG.standard_normal((2, 3, 6, 6)).astype(np.float32)
    got = np.asarray(cnnkit.onnx.load_model(tmp_path / "m.onnx")(x).data)
    np.testing.assert_allclose(got, _expected(x, params), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="load the model from its path"):
        cnnkit.onnx.load_model((tmp_path / "m.onnx").read_bytes())


@pytest.mark.parametrize("location", ["../secret.bin", "/etc/passwd", "sub/../../x.bin"])
def test_external_data_outside_the_folder_is_refused(tmp_path, location):
    data, _ = _small_cnn()
    model = onnx.load_from_string(data)
    tensor = model.graph.initializer[0]
    tensor.ClearField("raw_data")
    tensor.ClearField("float_data")
    tensor.data_location = TensorProto.EXTERNAL
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", location
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(ValueError, match="not a file beside the model"):
        cnnkit.onnx.load_model(path)


def test_malformed_and_truncated_files_name_the_path(tmp_path):
    data, _ = _small_cnn()
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\xff\xff\xff not protobuf")
    with pytest.raises(ValueError, match=r"bad\.onnx.*not a valid ONNX file"):
        cnnkit.onnx.load_model(bad)
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"cut\.onnx.*not a valid ONNX file"):
        cnnkit.onnx.load_model(cut)
    with pytest.raises(ValueError, match="cannot read"):
        cnnkit.onnx.load_model(tmp_path / "missing.onnx")
    with pytest.raises(TypeError, match="path_or_bytes must be a path or bytes"):
        cnnkit.onnx.load_model(3)
    with pytest.raises(ValueError, match="input_layout must be 'NCHW', 'NHWC' or None"):
        cnnkit.onnx.load_model(data, input_layout="CHW")


def test_every_truncation_is_a_value_error(tmp_path):
    data, _ = _small_cnn()
    path = tmp_path / "cut.onnx"
    for end in range(0, len(data), max(1, len(data) // 97)):
        path.write_bytes(data[:end])
        with pytest.raises(ValueError, match=r"cut\.onnx"):
            cnnkit.onnx.load_model(path)


def test_an_unsupported_operator_is_named_with_its_node_and_inputs():
    data = _model(
        [
            helper.make_node("Relu", ["x"], ["r"]),
            helper.make_node("Hardmax", ["r"], ["y"], name="h1"),
        ],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
    )
    with pytest.raises(NotImplementedError) as info:
        cnnkit.onnx.load_model(data)
    text = str(info.value)
    assert "'Hardmax'" in text and "'h1'" in text and "['r']" in text
    assert "supported operators: " in text and "Conv" in text and "LRN" in text


def test_unsupported_uses_are_explained():
    w = RNG.standard_normal((2, 3)).astype(np.float32)
    data = _model(
        [helper.make_node("Gemm", ["x", "w"], ["y"], name="g", transA=1)],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
        [_init("w", w)],
    )
    with pytest.raises(NotImplementedError, match=r"'Gemm' .*'g'.*transA=1"):
        cnnkit.onnx.load_model(data)
    data = _model(
        [helper.make_node("Conv", ["x", "w"], ["y"], name="c")],
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 4, 4]),
            helper.make_tensor_value_info("w", TensorProto.FLOAT, [2, 3, 1, 1]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2, 4, 4])],
    )
    with pytest.raises(NotImplementedError, match=r"input 1 .* must be a constant"):
        cnnkit.onnx.load_model(data)


def test_dynamic_sizes_other_than_the_batch_are_refused():
    data = _model(
        [helper.make_node("Relu", ["x"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, "H", "W"])],
    )
    with pytest.raises(ValueError, match="every size but the batch"):
        cnnkit.onnx.load_model(data)


def test_a_folded_constant_too_large_is_refused():
    data = _model(
        [
            helper.make_node("ConstantOfShape", ["huge"], ["z"]),
            helper.make_node("Add", ["x", "z"], ["y"]),
        ],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
        [_init("huge", np.array([1 << 20, 1 << 20], np.int64))],
    )
    with pytest.raises(ValueError, match="too large"):
        cnnkit.onnx.load_model(data)
