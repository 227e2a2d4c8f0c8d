"""cnnkit.face training pieces: the samplers, the encoder, the verification head and the
Siamese model (shared weights), and a small end-to-end run on procedural faces."""

from __future__ import annotations

import numpy as np
import pytest
from gradcheck import check_gradients, numeric_gradient

from cnnkit import layers, optimizers
from cnnkit.autograd import Tensor
from cnnkit.face import (
    PairSampler,
    PKSampler,
    TripletLoss,
    VerificationHead,
    build_encoder,
    build_siamese,
    ensemble_encoder,
    sample_pairs,
)


def test_pk_sampler_batches_are_identity_balanced_and_seeded():
    labels = np.repeat(np.arange(10), [5, 5, 5, 5, 5, 5, 3, 2, 8, 4])
    sampler = PKSampler(labels, 3, 4, seed=1, steps=6)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 6
    for index in batches:
        assert len(index) == 12 and len(set(index.tolist())) == 12
        ids, counts = np.unique(labels[index], return_counts=True)
        assert len(ids) == 3 and np.all(counts == 4)
        assert not set(ids.tolist()) & {6, 7}  # fewer than k images: never drawn
    assert [b.tolist() for b in PKSampler(labels, 3, 4, seed=1, steps=6)] == [
        b.tolist() for b in batches
    ]
    assert [b.tolist() for b in sampler] != [b.tolist() for b in batches]  # a new epoch
    x = np.arange(len(labels))[:, None] * 1.0
    xb, yb = next(iter(PKSampler(labels, 3, 4, x=x, seed=1)))
    np.testing.assert_array_equal(labels[xb[:, 0].astype(int)], yb)


def test_pk_sampler_transform_distorts_each_batch_replayably():
    from cnnkit.face.demo import training_augmentation

    labels = np.repeat(np.arange(6), 3)
    x = np.random.default_rng(0).integers(0, 256, (18, 16, 16, 3), dtype=np.uint8)
    sampler = PKSampler(labels, 3, 2, x=x, seed=2, steps=3, transform=training_augmentation())
    first = list(sampler)
    again = list(sampler)  # the next epoch: the same images, distorted anew
    sampler.epoch = 0
    replay = list(sampler)
    for (xa, ya), (xr, yr), index in zip(first, replay, PKSampler(labels, 3, 2, seed=2).indices(0)):
        np.testing.assert_array_equal(ya, labels[index])
        assert xa.shape == (6, 16, 16, 3) and xa.dtype == np.uint8
        assert not np.array_equal(xa, x[index])
        np.testing.assert_array_equal(xa, xr)
        np.testing.assert_array_equal(ya, yr)
    assert not np.array_equal(first[0][0], again[0][0])


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"p": 9, "k": 4}, ValueError, "larger than the data: only 8 of 10 identities"),
        ({"p": 2, "k": 9}, ValueError, "larger than the data"),
        ({"p": 1, "k": 4}, ValueError, "p must be >= 2"),
        ({"p": 2, "k": 1}, ValueError, "k must be >= 2"),
        ({"p": 2.0, "k": 2}, TypeError, "p must be an int"),
        ({"p": 2, "k": 2, "x": np.zeros(3)}, ValueError, "one image per label"),
        ({"p": 2, "k": 2, "transform": lambda **kw: kw}, ValueError, "transform needs the images"),
        ({"p": 2, "k": 2, "x": np.zeros(47), "transform": 3}, TypeError, "callable transform"),
    ],
)
def test_pk_sampler_rejects(kwargs, error, match):
    labels = np.repeat(np.arange(10), [5, 5, 5, 5, 5, 5, 3, 2, 8, 4])
    with pytest.raises(error, match=match):
        PKSampler(labels, **kwargs)
    with pytest.raises(TypeError, match="integer identity labels"):
        PKSampler(labels * 1.0, 2, 2)


def test_sample_pairs():
    labels = np.repeat(np.arange(6), [1, 4, 3, 2, 5, 1])
    i, j, same = sample_pairs(labels, 400, seed=0, same_fraction=0.25)
    assert same.sum() == 100 and len(i) == 400
    assert np.all((labels[i] == labels[j]) == (same == 1))
    assert np.all(i[same == 1] != j[same == 1])
    with pytest.raises(ValueError, match="two images"):
        sample_pairs(np.arange(4), 4, seed=0)
    with pytest.raises(ValueError, match="two identities"):
        sample_pairs(np.zeros(4, int), 4, seed=0, same_fraction=0.5)


@pytest.mark.parametrize("distance", ["l1", "chi2"])
def test_verification_head_values_and_gradients(distance):
    rng = np.random.default_rng(0)
    head = VerificationHead(distance, dtype="float64")
    a, b = rng.standard_normal((4, 6)), rng.standard_normal((4, 6))
    p = head([a, b]).data
    w, c = head.kernel.data, head.bias.data
    d = np.abs(a - b) if distance == "l1" else (a - b) ** 2 / (np.abs(a) + np.abs(b) + 1e-6)
    np.testing.assert_allclose(p, 1 / (1 + np.exp(-(d @ w + c))), rtol=1e-12)
    check_gradients(lambda x, y: head([x, y]), [a, b])
    r = rng.standard_normal(p.shape)
    head.kernel.zero_grad()
    head.bias.zero_grad()
    (head([a, b]) * r).sum().backward()
    for weight in (head.kernel, head.bias):
        numeric = numeric_gradient(lambda: float(np.sum(head([a, b]).data * r)), weight.data, 1e-6)
        np.testing.assert_allclose(weight.grad, numeric, rtol=1e-6, atol=1e-9)


def test_siamese_accumulates_both_branches_in_the_shared_encoder():
    encoder = build_encoder((12, 12, 1), 4, (2, 3), seed=0, dtype="float64")
    model = build_siamese(encoder, "l1")
    rng = np.random.default_rng(0)
    x1, x2 = rng.random((3, 12, 12, 1)) * 255, rng.random((3, 12, 12, 1)) * 255
    assert len(model.trainable_weights) == len(encoder.trainable_weights) + 2
    model([x1, x2]).sum().backward()
    both = [w.grad.copy() for w in encoder.trainable_weights]
    # The same through two explicit encoder calls, each branch's gradient alone:
    head = model.get_layer("verification_head")
    partial = []
    for frozen in (0, 1):
        for w in model.trainable_weights:
            w.zero_grad()
        e = [encoder(x1), encoder(x2)]
        e[frozen] = Tensor(e[frozen].data)  # no gradient through this branch
        head(e).sum().backward()
        partial.append([w.grad.copy() for w in encoder.trainable_weights])
    for total, g0, g1 in zip(both, *partial):
        np.testing.assert_allclose(total, g0 + g1, rtol=1e-10, atol=1e-12)
        assert np.any(g0) and np.any(g1)


def test_siamese_trains_with_binary_crossentropy_on_pairs():
    rng = np.random.default_rng(0)
    protos = rng.random((6, 12, 12, 1)) * 255
    labels = np.repeat(np.arange(6), 8)
    x = np.clip(protos[labels] + rng.normal(0, 20, (48, 12, 12, 1)), 0, 255).astype(np.float32)
    encoder = build_encoder((12, 12, 1), 8, (4, 8), seed=0)
    model = build_siamese(encoder, "chi2")
    model.compile(optimizers.Adam(3e-3), "binary_crossentropy", metrics=["accuracy"])
    history = model.fit(PairSampler(x, labels, 32, steps=15, seed=0), epochs=2, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    i, j, same = sample_pairs(labels, 200, seed=5)
    p = model.predict([x[i], x[j]], verbose=0)[:, 0]
    assert np.mean((p > 0.5) == (same == 1)) > 0.8


def test_encoder_builder_rejects():
    with pytest.raises(ValueError, match="input_shape must be"):
        build_encoder((64, 64))
    with pytest.raises(ValueError, match="embedding_dim"):
        build_encoder(embedding_dim=0)
    with pytest.raises(ValueError, match="too small"):
        build_encoder((4, 4, 3), filters=(2, 2, 2, 2))
    with pytest.raises(ValueError, match="pooling"):
        build_encoder(pooling="max")
    e = build_encoder((16, 16, 3), 5, (2, 2))
    out = e(np.random.default_rng(0).random((3, 16, 16, 3)) * 255).data
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1, rtol=1e-5)
    assert isinstance(e.layers[0], layers.Rescaling)
    for bad in (0, (1, 2, 1), (1, True), 1.5):
        with pytest.raises(ValueError, match="convs_per_stage"):
            build_encoder(filters=(4, 4), convs_per_stage=bad)


@pytest.mark.parametrize("batch_norm", [False, True])
def test_encoder_stages_of_several_convolutions(batch_norm):
    def convs(e):
        return [
            (lay.filters, lay.kernel_size) for lay in e.layers if isinstance(lay, layers.Conv2D)
        ]

    one = build_encoder((16, 16, 3), 5, (2, 3), batch_norm=batch_norm)
    two = build_encoder((16, 16, 3), 5, (2, 3), batch_norm=batch_norm, convs_per_stage=2)
    mixed = build_encoder((16, 16, 3), 5, (2, 3), batch_norm=batch_norm, convs_per_stage=(1, 3))
    assert [f for f, _ in convs(one)] == [2, 3]
    assert [f for f, _ in convs(two)] == [2, 2, 3, 3]
    assert [f for f, _ in convs(mixed)] == [2, 3, 3, 3]
    pools = [i for i, lay in enumerate(two.layers) if isinstance(lay, layers.MaxPooling2D)]
    assert len(pools) == 1  # between the stages, not between a stage's convolutions
    out = two(np.random.default_rng(0).random((3, 16, 16, 3)) * 255).data
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1, rtol=1e-5)


def test_ensemble_encoder_averages_the_members_squared_distances(tmp_path):
    from cnnkit import load_model
    from cnnkit.face.database import FaceDatabase

    members = [build_encoder((16, 16, 3), 6, (2, 3), seed=s) for s in (0, 1, 2)]
    ensemble = ensemble_encoder(members)
    x = np.random.default_rng(0).integers(0, 256, (5, 16, 16, 3)).astype(np.uint8)
    codes = [FaceDatabase(m).encode(x) for m in members]
    joined = FaceDatabase(ensemble).encode(x)
    assert joined.shape == (5, 18)
    np.testing.assert_allclose(joined, np.concatenate(codes, axis=1) / np.sqrt(3), atol=1e-6)
    d = [((c[:, None] - c[None]) ** 2).sum(-1) for c in codes]
    np.testing.assert_allclose(
        ((joined[:, None] - joined[None]) ** 2).sum(-1), np.mean(d, axis=0), atol=1e-5
    )
    ensemble.save(tmp_path / "ensemble.cnnkit")
    np.testing.assert_array_equal(
        FaceDatabase(load_model(tmp_path / "ensemble.cnnkit")).encode(x), joined
    )
    with pytest.raises(ValueError, match="at least two"):
        ensemble_encoder(members[:1])
    with pytest.raises(ValueError, match="one input shape"):
        ensemble_encoder([members[0], build_encoder((8, 8, 3), 6, (2, 3))])
    with pytest.raises(ValueError, match="distinct"):
        ensemble_encoder([members[0], members[0]])
    with pytest.raises(TypeError, match="declared input shape"):
        ensemble_encoder([members[0], layers.Dense(3)])


def test_encoder_fits_on_arrays_and_on_pk_batches():
    rng = np.random.default_rng(1)
    protos = rng.random((8, 12, 12, 1)) * 255
    labels = np.repeat(np.arange(8), 6)
    x = np.clip(protos[labels] + rng.normal(0, 25, (48, 12, 12, 1)), 0, 255).astype(np.float32)
    encoder = build_encoder((12, 12, 1), 8, (4, 8), seed=0)
    encoder.compile(optimizers.Adam(1e-3), TripletLoss(0.2, "semi_hard"))
    encoder.fit(x, labels, batch_size=16, epochs=1, verbose=0)
    history = encoder.fit(PKSampler(labels, 4, 3, x=x, steps=10), epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()


def test_encoder_with_batch_norm_tracks_its_statistics_quickly():
    # Momentum 0.9: one step moves the moving mean a tenth of the way to the batch's.
    encoder = build_encoder((12, 12, 1), 8, (4, 8), batch_norm=True, seed=0)
    norms = [la for la in encoder.layers if type(la).__name__ == "BatchNormalization"]
    assert len(norms) == 2 and all(la.momentum == 0.9 for la in norms)
    rng = np.random.default_rng(2)
    x = (rng.random((12, 12, 12, 1)) * 255).astype(np.float32)
    labels = np.repeat(np.arange(4), 3)
    encoder.compile(optimizers.SGD(0.0), TripletLoss(0.2, "batch_hard", squared=False))
    encoder.fit(x, labels, batch_size=12, epochs=1, verbose=0, shuffle=False)
    moving = norms[0].get_weights()[2]
    conv = encoder.layers[1](encoder.layers[0](x)).data  # Rescaling, then the first Conv2D
    np.testing.assert_allclose(moving, 0.1 * conv.mean(axis=(0, 1, 2)), rtol=1e-4, atol=1e-6)
