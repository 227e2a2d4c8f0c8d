"""Region kernels (roi_align, roi_pool and their backward passes, masks_to_boxes) against
cnnkit.reference, their invariants, gradient checks, and torchvision where it is installed."""

from __future__ import annotations

import numpy as np
import peers
import pytest
from arrays import layout_view, seeded
from gradcheck import check_gradients
from hypothesis import given
from hypothesis import strategies as st

import cnnkit
from cnnkit import autograd as ag
from cnnkit import ops
from cnnkit import reference as ref

LAYOUTS = ("contiguous", "fortran", "channels_first", "batch_stride", "channel_stride")
# The kernels repeat the reference's arithmetic; float32 sums may still differ in the last
# bit where the compiler keeps an intermediate in a register.
TOL = {np.dtype(np.float32): 2e-6, np.dtype(np.float64): 1e-13}


def assert_close(got: np.ndarray, want: np.ndarray) -> None:
    assert (got.dtype, got.shape) == (want.dtype, want.shape)
    tol = TOL[want.dtype]
    np.testing.assert_allclose(
        got, want, rtol=tol, atol=tol * max(1.0, np.abs(want).max(initial=0))
    )


@st.composite
def roi_problems(draw, *, max_boxes: int = 5):
    """(x, rois, output_size, spatial_scale, sampling_ratio, aligned) for the RoI kernels.

    Box corners are multiples of a quarter pixel (so roi_pool's rounding meets exact
    halves) or arbitrary floats, some outside the map, some empty or inverted.
    """
    dtype = np.dtype(draw(st.sampled_from([np.float32, np.float64])))
    n, h, w = draw(st.integers(1, 3)), draw(st.integers(1, 7)), draw(st.integers(1, 7))
    c = draw(st.integers(0, 4))
    x = seeded((n, h, w, c), dtype, draw(st.integers(0, 2**16)))
    x = layout_view(x, draw(st.sampled_from(LAYOUTS)))
    scale = draw(st.sampled_from([1.0, 0.5, 0.25, 2.0, 1 / 3]))
    k = draw(st.integers(0, max_boxes))
    span = max(h, w) + 3
    if draw(st.booleans()):
        corners = np.array(
            draw(st.lists(st.integers(-8, 4 * span), min_size=4 * k, max_size=4 * k))
        )
        corners = corners / 4.0
    else:
        corners = np.array(
            draw(st.lists(st.floats(-2, span, width=32), min_size=4 * k, max_size=4 * k))
        )
    corners = corners.reshape(k, 4) / scale
    if draw(st.booleans()):  # mostly valid boxes: sort the corners
        corners = np.concatenate(
            [
                np.minimum(corners[:, :2], corners[:, 2:]),
                np.maximum(corners[:, :2], corners[:, 2:]),
            ],
            axis=1,
        )
    index = np.array(draw(st.lists(st.integers(0, n - 1), min_size=k, max_size=k)))
    rois = np.concatenate([index.reshape(k, 1), corners], axis=1).astype(dtype)
    size = draw(st.one_of(st.integers(1, 3), st.tuples(st.integers(1, 3), st.integers(1, 3))))
    sampling = draw(st.sampled_from([-1, 0, 1, 2, 3]))
    return x, rois, size, scale, sampling, draw(st.booleans())


@given(problem=roi_problems())
def test_roi_align_matches_reference(problem):
    x, rois, size, scale, sampling, aligned = problem
    got = ops.roi_align(x, rois, size, scale, sampling, aligned)
    assert_close(got, ref.roi_align(x, rois, size, scale, sampling, aligned))


@given(problem=roi_problems(), seed=st.integers(0, 99))
def test_roi_align_backward_matches_reference(problem, seed):
    x, rois, size, scale, sampling, aligned = problem
    dy = seeded(ops.roi_align(x, rois, size, scale, sampling, aligned).shape, x.dtype, seed)
    got = ops.roi_align_backward(x, rois, dy, size, scale, sampling, aligned)
    assert_close(got, ref.roi_align_backward(x, rois, dy, size, scale, sampling, aligned))


@given(problem=roi_problems())
def test_roi_pool_matches_reference(problem):
    x, rois, size, scale, _, _ = problem
    got = ops.roi_pool(x, rois, size, scale)
    np.testing.assert_array_equal(got, ref.roi_pool(x, rois, size, scale), strict=True)


@given(problem=roi_problems(), seed=st.integers(0, 99))
def test_roi_pool_backward_matches_reference(problem, seed):
    x, rois, size, scale, _, _ = problem
    dy = seeded(ops.roi_pool(x, rois, size, scale).shape, x.dtype, seed)
    got = ops.roi_pool_backward(x, rois, dy, size, scale)
    assert_close(got, ref.roi_pool_backward(x, rois, dy, size, scale))


@given(problem=roi_problems(), seed=st.integers(0, 99))
def test_backward_is_the_adjoint_of_forward(problem, seed):
    """<roi_align(x), dy> == <x, roi_align_backward(dy)>: the forward pass is linear in x."""
    x, rois, size, scale, sampling, aligned = problem
    x = x.astype(np.float64)
    y = ops.roi_align(x, rois, size, scale, sampling, aligned)
    dy = seeded(y.shape, np.float64, seed)
    dx = ops.roi_align_backward(x, rois, dy, size, scale, sampling, aligned)
    np.testing.assert_allclose(np.sum(y * dy), np.sum(x * dx), rtol=1e-10, atol=1e-10)


@given(problem=roi_problems())
def test_list_of_per_image_boxes_equals_rows(problem):
    x, rois, size, scale, sampling, aligned = problem
    per_image = [rois[rois[:, 0] == i, 1:] for i in range(x.shape[0])]
    order = np.argsort(rois[:, 0], kind="stable")
    for name, args in (("roi_align", (sampling, aligned)), ("roi_pool", ())):
        fn = getattr(ops, name)
        np.testing.assert_array_equal(
            fn(x, per_image, size, scale, *args), fn(x, rois[order], size, scale, *args)
        )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_results_do_not_depend_on_the_thread_count(dtype, restore_threads):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 40, 50, 70)).astype(dtype)
    corners = np.sort(rng.uniform(-5, 55, (400, 2, 2)), axis=1).reshape(400, 4)
    rois = np.concatenate([rng.integers(0, 3, (400, 1)), corners], axis=1).astype(dtype)
    dy = rng.standard_normal((400, 7, 7, 70)).astype(dtype)
    calls = {
        "roi_align": lambda: ops.roi_align(x, rois, 7, 1.0, -1, True),
        "roi_align_backward": lambda: ops.roi_align_backward(x, rois, dy, 7, 1.0, 2),
        "roi_pool": lambda: ops.roi_pool(x, rois, 7),
        "roi_pool_backward": lambda: ops.roi_pool_backward(x, rois, dy, 7),
    }
    cnnkit.set_num_threads(1)
    single = {name: call() for name, call in calls.items()}
    cnnkit.set_num_threads(max(4, restore_threads))
    for name, call in calls.items():
        assert call().tobytes() == single[name].tobytes(), name


def test_known_values():
    x = np.arange(16.0).reshape(1, 4, 4, 1)
    np.testing.assert_array_equal(ops.roi_align(x, [[0, 0, 0, 2, 2]], 1)[..., 0], [[[5.0]]])
    np.testing.assert_array_equal(
        ops.roi_align(x, [[0, 0, 0, 2, 2]], 1, aligned=True)[..., 0], [[[2.5]]]
    )
    np.testing.assert_array_equal(
        ops.roi_pool(x, [np.array([[0, 0, 3, 3]])], 2)[0, ..., 0], [[5, 7], [13, 15]]
    )
    # Spatial scale: image box (0, 0, 6, 6) on a stride-2 map is the map's cells 0..3.
    np.testing.assert_array_equal(ops.roi_pool(x, [[0, 0, 0, 6, 6]], 1, 0.5)[0, 0, 0], [15.0])
    # A bin outside the map is 0 in both.
    assert ops.roi_pool(x, [[0, 10, 10, 12, 12]], 2).max() == 0
    assert ops.roi_align(x, [[0, 10, 10, 12, 12]], 2).max() == 0


def test_roi_pool_ties_and_nan():
    x = np.array([[[[1.0], [3.0]], [[3.0], [np.nan]]]])
    np.testing.assert_array_equal(ops.roi_pool(x[:, :, :, :], [[0, 0, 0, 0, 1]], 1), [[[[3.0]]]])
    assert np.isnan(ops.roi_pool(x, [[0, 0, 0, 1, 1]], 1)).all()
    dx = ops.roi_pool_backward(x, [[0, 0, 0, 1, 1]], np.ones((1, 1, 1, 1)), 1)
    np.testing.assert_array_equal(dx[0, :, :, 0], [[0, 0], [0, 1]])
    ties = np.array([[[[2.0], [2.0]], [[2.0], [1.0]]]])
    dx = ops.roi_pool_backward(ties, [[0, 0, 0, 1, 1]], np.ones((1, 1, 1, 1)), 1)
    np.testing.assert_array_equal(dx[0, :, :, 0], [[1, 0], [0, 0]])


def test_empty_and_degenerate_shapes():
    x = np.ones((2, 3, 4, 5), np.float32)
    assert ops.roi_align(x, np.zeros((0, 5)), 2).shape == (0, 2, 2, 5)
    assert ops.roi_align(x, [], (2, 3)).shape == (0, 2, 3, 5)
    assert ops.roi_pool(x, [np.zeros((0, 4)), np.zeros((0, 4))], 2).shape == (0, 2, 2, 5)
    assert ops.roi_align(np.ones((1, 3, 3, 0)), [[0, 0, 0, 1, 1]], 2).shape == (1, 2, 2, 0)
    one = np.full((1, 1, 1, 1), 7.0)
    assert ops.roi_align(one, [[0, 0, 0, 0, 0]], 3).tolist() == np.full((1, 3, 3, 1), 7.0).tolist()
    assert ops.roi_pool(one, [[0, 0, 0, 0, 0]], 3).max() == 7.0
    # An empty aligned box has no samples: 0.
    assert ops.roi_align(x, [[1, 2, 2, 2, 2]], 2, aligned=True).max() == 0
    dx = ops.roi_align_backward(x, np.zeros((0, 5)), np.zeros((0, 2, 2, 5)), 2)
    assert dx.shape == x.shape and not dx.any()


def test_integer_boxes_and_float64_boxes_on_float32_maps():
    x = seeded((2, 6, 6, 3), np.float32, 1)
    rows = [[1, 0, 1, 4, 5], [0, 2, 2, 3, 3]]
    want = ops.roi_align(x, np.array(rows, np.float32), 2)
    np.testing.assert_array_equal(ops.roi_align(x, rows, 2), want)
    np.testing.assert_array_equal(ops.roi_align(x, np.array(rows, np.int64), 2), want)
    np.testing.assert_array_equal(ops.roi_align(x, np.array(rows, np.float64), 2), want)


# --- autograd ---------------------------------------------------------------------------


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [-1, 2])
def test_roi_align_gradient(aligned, sampling_ratio):
    x = seeded((2, 5, 6, 3), np.float64, 2)
    rois = np.array([[0, 0.3, 0.6, 4.1, 3.7], [1, 1.2, -0.4, 6.5, 5.2], [1, 2, 2, 2.5, 4]])
    check_gradients(lambda t: ag.roi_align(t, rois, (2, 3), 1.0, sampling_ratio, aligned), [x])


def test_roi_pool_gradient():
    x = seeded((2, 6, 5, 2), np.float64, 3)  # distinct values: no ties to break
    boxes = [np.array([[0.0, 0.0, 4.0, 5.0]]), np.array([[1.0, 2.0, 3.0, 3.0], [0, 0, 9, 9]])]
    check_gradients(lambda t: ag.roi_pool(t, boxes, 2), [x])


def test_autograd_roi_ops_take_box_tensors_without_gradient():
    x = ag.Tensor(seeded((1, 4, 4, 2), np.float64, 4), requires_grad=True)
    boxes = ag.Tensor(np.array([[0, 0.5, 0.5, 3, 3]]))
    (ag.roi_align(x, boxes, 2).sum() + ag.roi_pool(x, [boxes.data[:, 1:]], 2).sum()).backward()
    assert x.grad.shape == x.shape and x.grad.any()


# --- masks_to_boxes ---------------------------------------------------------------------


@given(
    masks=st.integers(0, 4).flatmap(
        lambda n: st.tuples(st.integers(1, 6), st.integers(1, 6)).flatmap(
            lambda hw: st.lists(
                st.sampled_from([0, 0, 0, 1]),
                min_size=n * hw[0] * hw[1],
                max_size=n * hw[0] * hw[1],
            ).map(lambda v: np.array(v).reshape(n, *hw))
        )
    ),
    dtype=st.sampled_from([bool, np.uint8, np.int64, np.float32, np.float64]),
)
def test_masks_to_boxes_matches_reference(masks, dtype):
    masks = masks.astype(dtype)
    np.testing.assert_array_equal(ops.masks_to_boxes(masks), ref.masks_to_boxes(masks), strict=True)
    np.testing.assert_array_equal(
        ops.masks_to_boxes(masks[:, ::-1].copy()[:, ::-1]), ref.masks_to_boxes(masks)
    )


def test_masks_to_boxes_known_values():
    masks = np.zeros((3, 4, 5), bool)
    masks[0, 1:3, 2:5] = True
    masks[1, 3, 0] = True
    np.testing.assert_array_equal(
        ops.masks_to_boxes(masks), [[2, 1, 4, 2], [0, 3, 0, 3], [0, 0, 0, 0]]
    )
    assert ops.masks_to_boxes(np.zeros((0, 3, 3))).shape == (0, 4)
    assert ops.masks_to_boxes(np.array([[[np.nan]]])).tolist() == [[0, 0, 0, 0]]
    nonzero = ops.masks_to_boxes(np.array([[[0.0, -0.5]]]))
    np.testing.assert_array_equal(nonzero, [[1, 0, 1, 0]])


# --- torchvision (skipped where it is not installed) ------------------------------------


def _nchw(torch, x):
    return torch.from_numpy(np.ascontiguousarray(np.asarray(x).transpose(0, 3, 1, 2)))


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [-1, 2])
def test_roi_align_matches_torchvision(aligned, sampling_ratio):
    torch = pytest.importorskip("torch")
    tv = peers.torchvision("ops")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 12, 15, 4)).astype(np.float32)
    corners = np.sort(rng.uniform(-4, 70, (30, 2, 2)), axis=1).reshape(30, 4)
    rois = np.concatenate([rng.integers(0, 2, (30, 1)), corners], axis=1).astype(np.float32)
    args = ((3, 4), 0.25, sampling_ratio, aligned)
    t = _nchw(torch, x).requires_grad_(True)
    want = tv.roi_align(t, torch.from_numpy(rois), *args)
    got = ops.roi_align(x, rois, *args)
    np.testing.assert_allclose(
        got, want.detach().numpy().transpose(0, 2, 3, 1), rtol=1e-5, atol=1e-5
    )
    dy = rng.standard_normal(got.shape).astype(np.float32)
    want.backward(_nchw(torch, dy))
    dx = ops.roi_align_backward(x, rois, dy, *args)
    np.testing.assert_allclose(dx, t.grad.numpy().transpose(0, 2, 3, 1), rtol=1e-5, atol=1e-5)


def test_roi_pool_matches_torchvision():
    torch = pytest.importorskip("torch")
    tv = peers.torchvision("ops")
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 12, 15, 4)).astype(np.float32)
    boxes = [np.sort(rng.uniform(-4, 70, (n, 2, 2)), axis=1).reshape(n, 4) for n in (9, 6)]
    boxes = [b.astype(np.float32) for b in boxes]
    t = _nchw(torch, x).requires_grad_(True)
    want = tv.roi_pool(t, [torch.from_numpy(b) for b in boxes], (3, 2), 0.25)
    got = ops.roi_pool(x, boxes, (3, 2), 0.25)
    np.testing.assert_array_equal(got, want.detach().numpy().transpose(0, 2, 3, 1))
    dy = rng.standard_normal(got.shape).astype(np.float32)
    want.backward(_nchw(torch, dy))
    dx = ops.roi_pool_backward(x, boxes, dy, (3, 2), 0.25)
    np.testing.assert_allclose(dx, t.grad.numpy().transpose(0, 2, 3, 1), rtol=1e-6, atol=1e-6)


def test_masks_to_boxes_matches_torchvision():
    torch = pytest.importorskip("torch")
    tv = peers.torchvision("ops")
    masks = np.random.default_rng(2).random((6, 9, 11)) > 0.9
    masks[:, 4, 5] = True  # no empty mask: torchvision cannot take one
    want = tv.masks_to_boxes(torch.from_numpy(masks)).numpy()
    np.testing.assert_array_equal(ops.masks_to_boxes(masks), want)
