"""cnnkit.style: gradients, agreement with torch, reconstruction, texture synthesis, CLI, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from gradcheck import check_gradients

import cnnkit
from cnnkit import layers as L
from cnnkit import style
from cnnkit.autograd import Tensor
from cnnkit.style.optimize import Objective, as_network


def _scene(size: int, seed: int = 0) -> np.ndarray:
    """A smooth picture with edges: colour gradients, a disc and a bar (float in [0, 1])."""
    y, x = np.mgrid[0:size, 0:size] / size
    img = np.stack([0.2 + 0.6 * x, 0.3 + 0.5 * y, 0.8 - 0.6 * x * y], axis=-1)
    img[(x - 0.6) ** 2 + (y - 0.4) ** 2 < 0.05] = (0.9, 0.8, 0.1)
    img[(x > 0.15) & (x < 0.35) & (y > 0.5)] = (0.1, 0.2, 0.6)
    return img.astype(np.float32)


def _texture(size: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size]
    stripes = 0.5 + 0.5 * np.sin(x * 1.3 + 0.7 * y)[..., None] * np.array([0.9, -0.5, 0.3])
    return np.clip(stripes + 0.1 * rng.standard_normal((size, size, 3)), 0, 1).astype(np.float32)


def _small(dtype: str = "float64", **kwargs: int) -> style.StyleNetwork:
    spec = {"scales": 2, "filters": 6, "kernel_size": 3, **kwargs}
    return style.random_multiscale(**spec, seed=3, dtype=dtype)


def _keras_named_vgg16(width: int = 4, dtype: str = "float32") -> cnnkit.Model:
    """A narrow functional VGG-16 shape with Keras's layer names, separate ReLU layers and
    a classifier (as an imported network has them)."""
    inputs = L.Input((32, 32, 3), dtype=dtype)
    x = inputs
    for b, n in enumerate((2, 2, 3, 3, 3), start=1):
        for i in range(1, n + 1):
            x = L.Conv2D(width, 3, padding="same", name=f"block{b}_conv{i}", dtype=dtype)(x)
            x = L.ReLU(name=f"block{b}_relu{i}", dtype=dtype)(x)
        x = L.MaxPooling2D(2, name=f"block{b}_pool", dtype=dtype)(x)
    x = L.Dense(3, name="head", dtype=dtype)(L.Flatten(dtype=dtype)(x))
    return cnnkit.Model(inputs, x, seed=0)


def _onnx_vgg16(path, width: int = 8) -> None:
    """An ONNX VGG-16 feature stack (torchvision's node names and layout, float64, random
    weights) written with onnx.helper: what cnnkit.onnx imports for style transfer."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(5)
    nodes, weights, x, channels, k = [], [], "input", 3, 0
    for b, n in enumerate((2, 2, 3, 3, 3), start=1):
        for _ in range(n):
            w = rng.standard_normal((width, channels, 3, 3)) * np.sqrt(2 / (9 * channels))
            weights += [numpy_helper.from_array(w, f"w{k}")]
            weights += [numpy_helper.from_array(rng.standard_normal(width) * 0.1, f"b{k}")]
            conv = f"/features/features.{k}/Conv"
            nodes.append(
                helper.make_node(
                    "Conv",
                    [x, f"w{k}", f"b{k}"],
                    [f"c{k}"],
                    conv,
                    kernel_shape=[3, 3],
                    pads=[1, 1, 1, 1],
                )
            )
            nodes.append(helper.make_node("Relu", [f"c{k}"], [f"r{k}"], f"/features/{k}/Relu"))
            x, channels, k = f"r{k}", width, k + 1
        pool = f"/features/pool{b}/MaxPool"
        nodes.append(
            helper.make_node("MaxPool", [x], [pool], pool, kernel_shape=[2, 2], strides=[2, 2])
        )
        x = pool
    graph = helper.make_graph(
        nodes,
        "vgg16_features",
        [helper.make_tensor_value_info("input", TensorProto.DOUBLE, [1, 3, 32, 32])],
        [helper.make_tensor_value_info(x, TensorProto.DOUBLE, [1, width, 1, 1])],
        weights,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return 10 * math.log10(1.0 / mse)


# -- the costs -------------------------------------------------------------------------------
def test_costs_follow_the_course_formulas() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 1, 3, 4, 5))
    h, w, c = 3, 4, 5
    assert style.content_cost(a, b).item() == pytest.approx(
        np.sum((a - b) ** 2) / (4 * h * w * c), rel=1e-12
    )
    fa, fb = a.reshape(-1, c), b.reshape(-1, c)
    expected = np.sum((fa.T @ fa - fb.T @ fb) ** 2) / (2 * h * w * c) ** 2
    assert style.layer_style_cost(a, b).item() == pytest.approx(expected, rel=1e-12)
    both = style.style_cost({"x": a, "y": b}, {"x": b, "y": a}, [("x", 0.3), ("y", 0.7)])
    assert both.item() == pytest.approx(expected, rel=1e-12)
    total = style.total_cost(2.0, 3.0, alpha=10, beta=40)
    assert total.item() == pytest.approx(140.0)


def test_cost_gradients_match_finite_differences() -> None:
    rng = np.random.default_rng(1)
    target = rng.standard_normal((1, 3, 3, 4))
    generated = rng.standard_normal((1, 3, 3, 4))
    check_gradients(lambda g: style.content_cost(target, g), [generated])
    check_gradients(lambda g: style.layer_style_cost(target, g), [generated])
    check_gradients(lambda g: style.total_variation(g), [rng.random((1, 4, 5, 3))])


def test_total_cost_gradient_wrt_the_image_matches_finite_differences() -> None:
    net = _small()
    content, style_image = _scene(6), _texture(6)
    objective = Objective(net, content, style_image, alpha=10, beta=40, tv_weight=0.5)
    image = np.random.default_rng(2).uniform(0.2, 0.8, (1, 6, 6, 3))
    check_gradients(lambda g: objective.cost(g)[0], [image])
    # The frozen-weights path of Objective.__call__ gives the same gradient as the tape.
    value, grad, _ = objective(image[0])
    g = Tensor(image, requires_grad=True)
    total, _ = objective.cost(g)
    total.backward()
    assert value == pytest.approx(total.item(), rel=1e-12)
    np.testing.assert_allclose(grad, g.grad[0], rtol=1e-10, atol=1e-14)
    assert all(w.requires_grad for w in net.model.weights)  # restored after the call


# -- agreement with a torch transcription ----------------------------------------------------
@pytest.mark.parametrize("kind", ["random", "vgg16-shaped", "onnx-vgg16-shaped"])
def test_costs_and_gradient_equal_a_torch_transcription(kind: str, tmp_path) -> None:
    torch = pytest.importorskip("torch")
    import style_torch

    if kind == "random":
        net, size = _small(scales=3, filters=8), 16
    elif kind == "onnx-vgg16-shaped":
        _onnx_vgg16(tmp_path / "vgg.onnx")
        net, size = style.load_network(tmp_path / "vgg.onnx"), 40
        assert net.content_layer == "conv4_2" and net.input_size() is None
    else:
        net, size = as_network(_keras_named_vgg16(8, "float64"), "test"), 40
    content, style_image = _scene(size), _texture(size)
    image = np.random.default_rng(3).random((size, size, 3))
    objective = Objective(net, content, style_image, alpha=10, beta=40)
    value, grad, parts = objective(image)
    cost = style_torch.cost_function(
        net,
        content,
        style_image,
        objective.content_layer,  # the model's names (block4_relu2 for conv4_2)
        objective.style_layers,
        10.0,
        40.0,
        torch.float64,
    )
    g = style_torch.nchw(image, torch.float64).requires_grad_(True)
    total, j_content, j_style = cost(g)
    total.backward()
    assert parts["content"] == pytest.approx(j_content.item(), rel=1e-5)
    assert parts["style"] == pytest.approx(j_style.item(), rel=1e-5)
    assert value == pytest.approx(total.item(), rel=1e-5)
    theirs = g.grad.numpy()[0].transpose(1, 2, 0)
    np.testing.assert_allclose(grad, theirs, rtol=1e-5, atol=1e-8 * np.abs(theirs).max())


def test_projected_lbfgs_finds_the_box_constrained_minimum() -> None:
    from cnnkit.style import lbfgs

    rng = np.random.default_rng(4)
    scale = rng.uniform(0.1, 10.0, 50)  # condition number 100
    centre = rng.uniform(-0.5, 1.5, 50)  # about half the coordinates outside [0, 1]

    def fun(x: np.ndarray) -> tuple[float, np.ndarray]:
        return float(0.5 * np.sum(scale * (x - centre) ** 2)), scale * (x - centre)

    state = lbfgs.minimize(fun, np.full(50, 0.5), 60)
    np.testing.assert_allclose(state.x, np.clip(centre, 0, 1), atol=1e-6)
    assert state.evaluations < 200


# -- what the optimisation reaches -----------------------------------------------------------
def test_content_reconstruction_from_noise_at_a_shallow_layer() -> None:
    content = _scene(24)
    net = style.random_multiscale(scales=1, filters=32, kernel_size=3, seed=0)
    out = style.transfer(
        content,
        content,
        network=net,
        content_layer="scale0",
        alpha=1.0,
        beta=0.0,
        init="noise",
        optimizer="lbfgs",
        steps=30,
        progress=False,
    )
    noise = np.random.default_rng(0).uniform(0, 1, content.shape)
    psnr, start = _psnr(out / 255.0, content), _psnr(noise, content)
    print(f"content reconstruction at scale0 from noise: PSNR {psnr:.1f} dB (start {start:.1f})")
    assert psnr > 30.0


def test_texture_synthesis_lowers_the_style_cost_100_times() -> None:
    costs: list[float] = []
    style.transfer(
        _scene(24),
        _texture(24),
        network=_small("float32", scales=3, filters=16),
        alpha=0.0,
        beta=1.0,
        init="noise",
        optimizer="lbfgs",
        steps=40,
        progress=False,
        callback=lambda step, image, c: costs.append(c["style"]),
    )
    first = Objective(_small("float32", scales=3, filters=16), _scene(24), _texture(24), alpha=0)
    start = first(np.random.default_rng(0).uniform(0, 1, (24, 24, 3)).astype(np.float32))[2]
    ratio = start["style"] / costs[-1]
    print(f"texture synthesis: style cost {start['style']:.4g} -> {costs[-1]:.4g} ({ratio:.0f}x)")
    assert ratio >= 100


def test_adam_transfer_lowers_the_cost_and_returns_uint8_rgb() -> None:
    totals: list[float] = []
    out = style.transfer(
        _scene(16),
        _texture(16),
        network=_small("float32"),
        steps=15,
        progress=False,
        callback=lambda step, image, c: totals.append(c["total"]),
    )
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8
    assert totals[-1] < 0.5 * totals[0]


# -- networks --------------------------------------------------------------------------------
def test_vgg_names_map_onto_keras_named_chains_with_separate_relus() -> None:
    model = _keras_named_vgg16()
    names = style.vgg_layer_names(model)
    assert names["conv4_2"] == "block4_relu2" and names["pool5"] == "block5_pool"
    net = as_network(model, "t")
    assert net.content_layer == "conv4_2" and net.input_size() is None
    features = net.features(["block3_relu1"])
    assert [layer.name for layer in features.layers][-1] == "block3_relu1"
    # A 48x48 image through a model declared for 32x32 with a classifier: the layers up to
    # the last one used take any size.
    acts = features.activations(np.zeros((1, 48, 48, 3), np.float32), ["block3_relu1"])
    assert acts["block3_relu1"].shape == (1, 12, 12, 4)


def test_a_saved_random_network_keeps_its_layers(tmp_path) -> None:
    net = _small("float32")
    net.model.save(tmp_path / "random.cnnkit")
    loaded = style.load_network(tmp_path / "random.cnnkit")
    assert (loaded.content_layer, loaded.style_layers) == (net.content_layer, net.style_layers)
    image = _scene(8)
    np.testing.assert_array_equal(loaded.model(image[None]).data, net.model(image[None]).data)


def test_network_from_a_model_file(tmp_path) -> None:
    model = _keras_named_vgg16()
    path = tmp_path / "vgg.cnnkit"
    model.save(path)
    net = style.load_network(path)
    assert net.content_layer == "conv4_2"
    assert dict(net.style_layers) == dict(style.VGG_STYLE_LAYERS)
    for a, b in zip(model.get_weights(), net.model.get_weights()):
        np.testing.assert_array_equal(a, b)
    out = style.transfer(_scene(24), _texture(24), network=path, steps=2, progress=False)
    assert out.shape == (24, 24, 3)


# -- the command line ------------------------------------------------------------------------
def test_cli_end_to_end(tmp_path, capsys) -> None:
    pytest.importorskip("PIL")
    from PIL import Image

    from cnnkit.cli import main

    content = (_scene(20) * 255).astype(np.uint8)
    Image.fromarray(content).save(tmp_path / "content.png")
    gray = (_texture(24)[..., 0] * 255).astype(np.uint8)
    Image.fromarray(gray).save(tmp_path / "style.png")
    out, frames = tmp_path / "out.png", tmp_path / "frames"
    argv = [str(tmp_path / "content.png"), str(tmp_path / "style.png"), "-o", str(out)]
    code = main(["style", *argv, "--size", "16", "--steps", "3", "--frames", str(frames)])
    code_every = main(
        [
            "style",
            *argv,
            "--size",
            "16",
            "--steps",
            "2",
            "--frames",
            str(frames),
            "--frame-every",
            "1",
        ]
    )
    assert code == code_every == 0
    result = np.asarray(Image.open(out))
    assert result.shape == (16, 16, 3) and result.dtype == np.uint8
    assert sorted(p.name for p in frames.iterdir()) == ["step00001.png", "step00002.png"]
    err = capsys.readouterr().err
    assert "grayscale; converted to RGB" in err and "differ in size" in err
    assert main(["style", *argv[:2], "-o", str(out), "--alpha", "-1", "--steps", "1"]) == 2
    assert "alpha must be >= 0" in capsys.readouterr().err


# -- bad input -------------------------------------------------------------------------------
def _run(**kwargs):
    spec = {"network": _small("float32"), "steps": 1, "progress": False, **kwargs}
    return style.transfer(_scene(8), _texture(8), **spec)


def test_a_model_without_the_recipe_needs_its_layers_named() -> None:
    model = cnnkit.Sequential([L.Conv2D(4, 3, name="first"), L.ReLU(name="act")], seed=0)
    with pytest.raises(ValueError, match=r"content_layer must be given .*valid layers: first, act"):
        style.transfer(_scene(8), _texture(8), network=model, steps=1, progress=False)
    out = style.transfer(
        _scene(8),
        _texture(8),
        network=model,
        content_layer="act",
        style_layers=["first", "act"],
        steps=1,
        progress=False,
    )
    assert out.shape == (8, 8, 3)


def test_unknown_layer_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"content_layer names no layer .*'conv9'.*scale0"):
        _run(content_layer="conv9")
    with pytest.raises(ValueError, match=r"style_layers names no layer .*'nope'.*scale1"):
        _run(style_layers=[("scale0", 0.5), ("nope", 0.5)])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"alpha": -1.0}, r"transfer\(\): alpha must be >= 0, got -1"),
        ({"beta": float("nan")}, r"transfer\(\): beta must be >= 0, got nan"),
        ({"tv_weight": -0.1}, r"tv_weight must be >= 0"),
        ({"style_layers": [("scale0", -0.5)]}, r"weight of style layer 'scale0'.* >= 0"),
        ({"style_layers": [("scale0", float("nan"))]}, r"weight of style layer 'scale0'"),
        ({"alpha": 0.0, "beta": 0.0}, r"nothing to optimise"),
        ({"init": "zeros"}, r"init must be"),
        ({"optimizer": "sgd"}, r"optimizer must be"),
        ({"steps": -1}, r"steps must be >= 0"),
        ({"size": 0}, r"size must be >= 1"),
    ],
)
def test_bad_arguments_name_themselves(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _run(**kwargs)


def test_bad_images_name_the_argument(tmp_path) -> None:
    pytest.importorskip("PIL")
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(ValueError, match=r"transfer\(\): style .*broken.png.* not a readable"):
        style.transfer(_scene(8), str(bad), steps=0, progress=False)
    with pytest.raises(ValueError, match=r"content must hold values in \[0, 1\]"):
        style.transfer(_scene(8) * 2, _texture(8), steps=0, progress=False)
    with pytest.raises(ValueError, match=r"style must be an image of shape"):
        style.transfer(_scene(8), np.zeros((8, 8, 2), np.uint8), steps=0, progress=False)
    with pytest.raises(TypeError, match=r"content must be uint8 or float"):
        style.transfer(np.zeros((8, 8, 3), np.int32), _texture(8), steps=0, progress=False)


def test_conversions_and_resizing_are_announced() -> None:
    gray = (_texture(12)[..., 0] * 255).astype(np.uint8)
    rgba = np.concatenate([_scene(8), np.ones((8, 8, 1), np.float32)], axis=-1)
    with pytest.warns(UserWarning) as record:
        out = style.transfer(rgba, gray, network=_small("float32"), steps=1, progress=False)
    messages = " ".join(str(w.message) for w in record)
    assert "content is RGBA; the alpha channel was dropped" in messages
    assert "style is grayscale; converted to RGB" in messages
    assert "differ in size; the style image is resized to 8x8" in messages
    assert out.shape == (8, 8, 3)


def test_impossible_scale_counts_and_empty_images_are_rejected() -> None:
    # 2**31 scales built Conv2D layers for hours; an empty image was a ZeroDivisionError.
    with pytest.raises(
        ValueError, match=r"^RandomMultiscale\(\): scales must be <= 32, got 2147483648"
    ):
        style.random_multiscale(scales=2**31, filters=1, kernel_size=1)
    with pytest.raises(
        ValueError, match=r"^total_variation\(\): image must not be empty, got shape \(0, 4, 4, 3\)"
    ):
        style.total_variation(np.zeros((0, 4, 4, 3)))


def test_write_image_names_a_float_or_shapeless_image(tmp_path) -> None:
    # Pillow's "Cannot handle this data type: (1, 1, 3), <f4" named neither function nor
    # argument, and nothing said the image must be uint8.
    with pytest.raises(
        TypeError, match=r"^write_image\(\): image must be uint8 .* got dtype float32"
    ):
        style.write_image(tmp_path / "a.png", np.zeros((4, 4, 3), np.float32))
    with pytest.raises(
        ValueError, match=r"^write_image\(\): image must have shape .* got \(0, 4, 3\)"
    ):
        style.write_image(tmp_path / "a.png", np.zeros((0, 4, 3), np.uint8))
    assert not (tmp_path / "a.png").exists()
    style.write_image(tmp_path / "a.png", np.zeros((4, 5, 1), np.uint8))
    with pytest.warns(UserWarning, match="grayscale; converted to RGB"):
        assert style.read_image(tmp_path / "a.png").shape == (4, 5, 3)


def test_cli_reports_a_memory_error_like_the_other_errors(tmp_path, capsys, monkeypatch) -> None:
    # `cnnkit style a.png b.png --size 200000` ended in a traceback (NumPy's
    # _ArrayMemoryError); the command reports it and returns 2 as for bad arguments.
    from cnnkit.cli import main

    def too_large(*args, **kwargs):
        raise MemoryError("Unable to allocate 447. GiB")

    monkeypatch.setattr(style, "transfer", too_large)
    assert main(["style", "a.png", "b.png", "-o", str(tmp_path / "o.png")]) == 2
    assert capsys.readouterr().err == "cnnkit style: Unable to allocate 447. GiB\n"


def test_load_network_says_a_folder_is_a_folder(tmp_path) -> None:
    # It said "network file '...' does not exist" of a folder that exists.
    with pytest.raises(ValueError, match=r"^load_network\(\): network file '.*' is a folder"):
        style.load_network(tmp_path)
