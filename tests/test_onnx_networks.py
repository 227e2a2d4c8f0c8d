"""torchvision's networks exported by torch and imported by cnnkit.onnx: the same logits as
torch (and onnxruntime where it is installed), within 1e-4 of the logits' magnitude.

Skipped without torch and torchvision (not in the test extra: CI does not run these).
``python tests/test_onnx_networks.py`` prints the agreement table.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch_networks as nets

pytest.importorskip("onnx")
torch = pytest.importorskip("torch")
if nets.torchvision_models() is None:
    pytest.skip("torchvision is not installed", allow_module_level=True)

import cnnkit.onnx  # noqa: E402


def compare(name: str, batch: int = 2) -> dict[str, float]:
    """Max absolute error against torch (and onnxruntime) and the same relative to the
    largest logit."""
    size = nets.NETWORKS[name][1]
    net = nets.build(name)
    data = nets.export(net, size)
    x = nets.images(batch, size)
    model = cnnkit.onnx.load_model(data)
    got = np.asarray(model(x).data)
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    scale = float(np.abs(want).max())
    err = float(np.abs(got - want).max())
    out = {"abs": err, "rel": err / scale}
    try:
        import onnxruntime as ort
    except ImportError:
        return out
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    peer = session.run(None, {"input": x})[0]
    out["ort_abs"] = float(np.abs(got - peer).max())
    out["ort_rel"] = out["ort_abs"] / scale
    return out


@pytest.mark.parametrize("name", sorted(nets.NETWORKS))
def test_network_matches_torch(name: str) -> None:
    errors = compare(name)
    assert errors["rel"] <= 1e-4, errors
    if "ort_rel" in errors:
        assert errors["ort_rel"] <= 1e-4, errors


@pytest.mark.parametrize("name", ["resnet18", "shufflenet_v2_x1_0"])
def test_dynamo_exports_import_too(name: str) -> None:
    """torch.export's exporter (opset 18, a fixed batch of 1 in the file): other batch
    sizes still run, since the batch axis stays cnnkit's own."""
    pytest.importorskip("onnxscript")
    net = nets.build(name)
    model = cnnkit.onnx.load_model(nets.export(net, 64, dynamo=True))
    x = nets.images(3, 64)
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    got = np.asarray(model(x).data)
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()


def test_caffe_style_layers_match_torch() -> None:
    net = nets.caffe_style()
    model = cnnkit.onnx.load_model(nets.export(net, 20))
    x = nets.images(3, 20)
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    got = np.asarray(model(x).data)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())
    # torch writes LocalResponseNorm out (Pow, Pad, AveragePool): the LRN operator itself
    # is checked by the backend's own cases.
    assert {"OnnxPooling", "PRelu"} <= {type(layer).__name__ for layer in model.layers}


def test_imported_network_is_an_ordinary_model(tmp_path) -> None:
    """Names follow the nodes; summary, activations, freezing, fit, save and load work."""
    import cnnkit

    net = nets.build("resnet18")
    model = cnnkit.onnx.load_model(nets.export(net, 32))
    names = [layer.name for layer in model.layers]
    assert "conv1.Conv" in names and "fc.Gemm" in names
    lines: list[str] = []
    model.summary(print_fn=lines.append)
    assert any("fc.Gemm" in line and "Dense" in line for line in lines)
    x = nets.images(4, 32)
    before = np.asarray(model(x).data)
    feats = model.activations(x, ["layer4.layer4.1.Add"])  # an AddReLU: the block's output
    assert feats["layer4.layer4.1.Add"].shape == (4, 1, 1, 512)  # channels-last
    path = tmp_path / "resnet.keras"
    model.save(path)
    again = cnnkit.load_model(path)
    np.testing.assert_array_equal(np.asarray(again(x).data), before)
    for layer in model.layers[:-1]:
        layer.trainable = False
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    frozen = model.get_layer("conv1.Conv").get_weights()[0].copy()
    model.fit(x, np.arange(4), epochs=1, batch_size=4, verbose=0)
    np.testing.assert_array_equal(model.get_layer("conv1.Conv").get_weights()[0], frozen)
    assert not np.array_equal(np.asarray(model(x).data), before)  # the head learned


if __name__ == "__main__":  # pragma: no cover - the table for the report
    for name in sorted(nets.NETWORKS):
        e = compare(name)
        print(
            f"{name:20s} torch abs {e['abs']:.2e} rel {e['rel']:.2e}"
            + (f"  ort abs {e['ort_abs']:.2e} rel {e['ort_rel']:.2e}" if "ort_abs" in e else "")
        )
