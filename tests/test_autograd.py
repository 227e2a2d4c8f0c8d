"""Autograd: every differentiable op against float64 finite differences, plus the tape's rules
(accumulation, broadcasting, no_grad, leaves only) and its errors."""

from __future__ import annotations

import numpy as np
import pytest
from gradcheck import check_gradients
from hypothesis import given
from hypothesis import strategies as st

from cnnkit import autograd as ag
from cnnkit import ops
from cnnkit.autograd import Tensor

small_shapes = st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple)
seeds = st.integers(0, 2**16)


def normal(shape, seed, *, away_from_zero=False):
    x = np.random.default_rng(seed).standard_normal(shape)
    if away_from_zero:  # keeps kinks (relu, abs, clip) outside the finite-difference step
        x = np.where(np.abs(x) < 0.05, 0.3, x)
    return x


UNARY = {
    "exp": (ag.exp, False),
    "log": (lambda t: ag.log(ag.abs(t) + 0.5), True),
    "sqrt": (lambda t: ag.sqrt(ag.square(t) + 0.1), False),
    "square": (ag.square, False),
    "abs": (ag.abs, True),
    "tanh": (ag.tanh, False),
    "sigmoid": (ag.sigmoid, False),
    "softplus": (ag.softplus, False),
    "log_sigmoid": (ag.log_sigmoid, False),
    "relu": (ag.relu, True),
    "leaky_relu": (lambda t: ag.leaky_relu(t, 0.1), True),
    "clip": (lambda t: ag.clip(t * 3, -0.5, 0.7), True),
    "neg": (lambda t: -t, False),
    "pow": (lambda t: (ag.abs(t) + 0.5) ** 1.5, True),
    "astype": (lambda t: t.astype(np.float64) * 2, False),
}


@pytest.mark.parametrize("name", sorted(UNARY))
@given(shape=small_shapes, seed=seeds)
def test_unary_gradients(name, shape, seed):
    fn, kinked = UNARY[name]
    x = normal(shape, seed, away_from_zero=kinked)
    if name == "clip":
        x = np.where(np.abs(x * 3 + 0.5) < 0.05, 0.3, x)
        x = np.where(np.abs(x * 3 - 0.7) < 0.05, 0.1, x)
    check_gradients(fn, [x])


BINARY = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / (ag.abs(b) + 0.5),
    "maximum": ag.maximum,
    "minimum": ag.minimum,
    "where": lambda a, b: ag.where(a.data > 0, a, b),
}


@pytest.mark.parametrize("name", sorted(BINARY))
@given(shape=small_shapes, seed=seeds, broadcast=st.sampled_from(["none", "lead", "ones"]))
def test_binary_gradients_with_broadcasting(name, shape, seed, broadcast):
    a = normal(shape, seed, away_from_zero=True)
    b_shape = {"none": shape, "lead": shape[1:] or (1,), "ones": (1,) * len(shape)}[broadcast]
    # The offset keeps a and b apart where both were moved away from zero (no max/min tie).
    b = normal(b_shape, seed + 1, away_from_zero=True) + 0.01
    check_gradients(BINARY[name], [a, b])


def test_scalar_operands_keep_the_dtype():
    x = Tensor(np.ones(3, np.float32), requires_grad=True)
    for y in (x + 1, 2 * x, x / 3.0, 1 - x, x**2, 2.0 / (x + 1)):
        assert y.dtype == np.float32
    y = np.ones(3) + x  # ndarray on the left still builds a Tensor
    assert isinstance(y, Tensor)


@given(shape=small_shapes, seed=seeds, keepdims=st.booleans(), data=st.data())
def test_reduction_gradients(shape, seed, keepdims, data):
    axis = data.draw(st.one_of(st.none(), st.integers(-len(shape), len(shape) - 1)))
    x = normal(shape, seed)
    check_gradients(lambda t: t.sum(axis=axis, keepdims=keepdims), [x])
    check_gradients(lambda t: t.mean(axis=axis, keepdims=keepdims), [x])
    check_gradients(lambda t: t.max(axis=axis, keepdims=keepdims), [x])
    check_gradients(lambda t: ag.logsumexp(t, axis=axis or -1, keepdims=keepdims), [x])


def test_max_shares_the_gradient_between_ties():
    x = Tensor(np.array([1.0, 3.0, 3.0]), requires_grad=True)
    x.max().backward()
    np.testing.assert_array_equal(x.grad, [0.0, 0.5, 0.5])


@given(shape=small_shapes, seed=seeds)
def test_softmax_gradients(shape, seed):
    x = normal(shape, seed) * 3
    check_gradients(ag.softmax, [x])
    check_gradients(ag.log_softmax, [x])
    check_gradients(lambda t: ag.softmax(t, axis=0), [x])


def test_softmax_and_log_softmax_are_stable_for_large_logits():
    x = Tensor(np.array([[1000.0, 0.0, -1000.0]]), requires_grad=True)
    np.testing.assert_allclose(ag.softmax(x).data, [[1.0, 0.0, 0.0]])
    np.testing.assert_allclose(ag.log_softmax(x).data, [[0.0, -1000.0, -2000.0]])
    ag.log_softmax(x)[0, 1].backward()
    assert np.all(np.isfinite(x.grad))
    assert np.isfinite(ag.sigmoid(Tensor(np.array([-1000.0, 1000.0]))).data).all()
    np.testing.assert_allclose(ag.softplus(Tensor(np.array([1000.0, -1000.0]))).data, [1000.0, 0.0])


@given(seed=seeds, data=st.data())
def test_shape_op_gradients(seed, data):
    x = normal((2, 3, 4), seed)
    check_gradients(lambda t: t.reshape(6, 4), [x])
    check_gradients(lambda t: t.flatten(), [x])
    check_gradients(lambda t: t.transpose(2, 0, 1), [x])
    check_gradients(lambda t: t.T, [x])
    check_gradients(lambda t: t[:, 1:, ::2], [x])
    check_gradients(lambda t: t[..., 0], [x])
    index = data.draw(st.lists(st.integers(0, 2), min_size=1, max_size=5))
    check_gradients(lambda t: t[:, index], [x])  # repeated indices accumulate
    check_gradients(lambda t: ag.pad(t, [(0, 0), (1, 2), (2, 0)]), [x])
    y = normal((2, 1, 4), seed + 1)
    check_gradients(lambda a, b: ag.concat([a, b, a], axis=1), [x, y])
    check_gradients(lambda a, b: ag.stack([a, b * 2], axis=-1), [x[:, :1], y])


@given(
    m=st.integers(1, 5),
    k=st.integers(1, 5),
    n=st.integers(1, 5),
    seed=seeds,
    batch=st.sampled_from([(), (2,)]),
)
def test_matmul_gradients(m, k, n, seed, batch):
    a = normal((*batch, m, k), seed)
    b = normal((k, n), seed + 1)
    check_gradients(ag.matmul, [a, b])
    check_gradients(lambda x, y: x @ y, [a, b])
    if batch:  # a batch of right operands goes through NumPy's matmul
        check_gradients(ag.matmul, [a, normal((*batch, k, n), seed + 2)])


def test_matmul_uses_the_native_gemm_and_rejects_vectors():
    a, b = normal((3, 4), 0).astype(np.float32), normal((4, 2), 1).astype(np.float32)
    np.testing.assert_array_equal(ag.matmul(a, b).data, ops.matmul(a, b))
    with pytest.raises(ValueError, match=r"matmul\(\): operands must have at least 2"):
        ag.matmul(np.ones(3), np.ones((3, 2)))


conv_cases = st.sampled_from(
    [
        # (x shape, kernel, groups, stride, padding, dilation)
        ((2, 7, 3), (3,), 1, 1, "same", 1),
        ((1, 6, 5, 2), (3, 2), 1, (2, 1), "valid", 1),
        ((2, 5, 5, 4), (3, 3), 2, 1, "same", 1),
        ((1, 6, 6, 3), (3, 3), 3, 1, ((1, 0), (2, 1)), (1, 2)),
        ((1, 4, 4, 3, 2), (2, 2, 2), 1, 2, "same", 1),
        ((2, 5, 5, 1), (5, 5), 1, 1, "same", 1),
    ]
)


@given(case=conv_cases, seed=seeds, bias=st.booleans())
def test_conv_gradients(case, seed, bias):
    shape, kernel, groups, stride, padding, dilation = case
    c_in, c_out = shape[-1], 2 * groups
    x = normal(shape, seed)
    w = normal((*kernel, c_in // groups, c_out), seed + 1)
    spec = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}
    if bias:
        check_gradients(lambda x, w, b: ag.conv(x, w, b, **spec), [x, w, normal(c_out, seed)])
    else:
        check_gradients(lambda x, w: ag.conv(x, w, **spec), [x, w])


pool_cases = st.sampled_from(
    [
        ((2, 7, 3), 2, None, "valid"),
        ((1, 5, 6, 2), (2, 3), (1, 2), "same"),
        ((2, 4, 4, 1), 3, 1, "valid"),
        ((1, 4, 3, 4, 2), 2, None, "same"),
    ]
)


@given(case=pool_cases, seed=seeds)
def test_pool_gradients(case, seed):
    shape, size, strides, padding = case
    # Distinct values, at least 4 / x.size apart: two values of one window within the
    # finite-difference step of each other (1.06178035 and 1.06178064 once) share the
    # numeric gradient of the maximum, which the analytic one gives to one of them.
    x = np.random.default_rng(seed).permutation(np.linspace(-2.0, 2.0, int(np.prod(shape))))
    x = x.reshape(shape)
    check_gradients(lambda t: ag.max_pool(t, size, stride=strides, padding=padding), [x])
    check_gradients(lambda t: ag.avg_pool(t, size, stride=strides, padding=padding), [x])
    check_gradients(ag.global_avg_pool, [x])
    check_gradients(ag.global_max_pool, [x])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("channels", [1, 5])  # the few-channel input layer and im2col
@pytest.mark.parametrize("elsewhere", [False, True])
def test_relu_conv_then_max_pool_masks_once(dtype, channels, elsewhere):
    """A max pool after a ReLU-fused convolution masks its own gradient; the convolution
    then skips its mask, unless the gradient also comes from another use of its output.
    The gradients equal those of the unfused ReLU (zeros of either sign)."""
    x = normal((3, 9, 8, channels), 1).astype(dtype)
    w, b = normal((3, 3, channels, 6), 2).astype(dtype), normal(6, 3).astype(dtype)
    dy = normal((3, 3, 3, 6), 4).astype(dtype)
    other = normal((3, 7, 6, 6), 5).astype(dtype)
    grads = []
    for fused in (True, False):
        tx, tw, tb = (Tensor(a, requires_grad=True) for a in (x, w, b))
        y = ag.conv(tx, tw, tb, activation="relu") if fused else ag.relu(ag.conv(tx, tw, tb))
        loss = (ag.max_pool(y, 2) * dy).sum()
        if elsewhere:
            loss = loss + (y * other).sum()
        loss.backward()
        grads.append([tx.grad, tw.grad, tb.grad])
    for got, want in zip(*grads):
        np.testing.assert_array_equal(got, want)


@given(
    shape=st.sampled_from([(1, 4, 3), (2, 3, 3, 2), (1, 2, 2, 2, 3)]),
    seed=seeds,
    normalize=st.sampled_from([None, "positions", "size"]),
)
def test_gram_gradients(shape, seed, normalize):
    check_gradients(lambda t: ag.gram(t, normalize=normalize), [normal(shape, seed)])


@given(shape=st.sampled_from([(5, 3), (2, 3, 4, 2), (4, 1)]), seed=seeds)
def test_batch_norm_gradients(shape, seed):
    x = normal(shape, seed) * 2 + 1
    gamma, beta = normal(shape[-1], seed + 1), normal(shape[-1], seed + 2)
    check_gradients(lambda x, g, b: ag.batch_norm(x, g, b, epsilon=1e-3)[0], [x, gamma, beta])


def test_batch_norm_statistics():
    x = normal((6, 2, 3), 0)
    y, mean, var = ag.batch_norm(x, np.ones(3), np.zeros(3), epsilon=0.0)
    np.testing.assert_allclose(mean, x.reshape(-1, 3).mean(0))
    np.testing.assert_allclose(var, x.reshape(-1, 3).var(0))
    np.testing.assert_allclose(y.data.reshape(-1, 3).std(0), 1.0, rtol=1e-12)


def test_dropout_scales_survivors_and_routes_the_gradient():
    x = Tensor(np.ones((200, 50)), requires_grad=True)
    y = ag.dropout(x, 0.25, np.random.default_rng(0))
    kept = y.data != 0
    assert 0.7 < kept.mean() < 0.8
    np.testing.assert_allclose(y.data[kept], 1 / 0.75)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, y.data)
    assert ag.dropout(x, 0.0, np.random.default_rng(0)) is x
    with pytest.raises(ValueError, match=r"dropout\(\): rate must be in \[0, 1\), got 1"):
        ag.dropout(x, 1, np.random.default_rng(0))


def test_gradients_accumulate_over_uses_and_calls():
    # A Siamese network applies one set of weights to several inputs.
    w = Tensor(np.array([[2.0]]), requires_grad=True)
    a, b = Tensor(np.array([[3.0]])), Tensor(np.array([[5.0]]))
    ((a @ w) * (b @ w)).sum().backward()  # d(15 w^2)/dw = 30 w
    np.testing.assert_allclose(w.grad, [[60.0]])
    (a @ w).sum().backward()  # a second backward adds to .grad
    np.testing.assert_allclose(w.grad, [[63.0]])
    w.zero_grad()
    assert w.grad is None


def test_input_gradients_for_an_optimised_image():
    image = Tensor(normal((1, 4, 4, 3), 0), requires_grad=True)
    w = Tensor(normal((3, 3, 3, 2), 1))  # fixed weights: no gradient kept for them
    ag.gram(ag.conv(image, w, padding="same")).sum().backward()
    assert image.grad.shape == image.shape and w.grad is None


def test_only_leaves_keep_gradients():
    x = Tensor(np.ones(3), requires_grad=True)
    y = x * 2
    (y * y).sum().backward()
    assert y.grad is None and not y.is_leaf and x.is_leaf
    np.testing.assert_allclose(x.grad, 8.0)


def test_no_grad_records_nothing_and_is_thread_local():
    import threading

    x = Tensor(np.ones(2), requires_grad=True)
    seen = []
    with ag.no_grad():
        y = x * 2
        thread = threading.Thread(target=lambda: seen.append(ag.is_grad_enabled()))
        thread.start()
        thread.join()
        with ag.enable_grad():
            z = x * 2
    assert not y.requires_grad and z.requires_grad and seen == [True]
    assert ag.is_grad_enabled()
    with pytest.raises(RuntimeError, match=r"backward\(\): this tensor does not require"):
        y.sum().backward()


def test_deep_graphs_do_not_hit_the_recursion_limit():
    x = Tensor(np.ones(1), requires_grad=True)
    y = x
    for _ in range(5000):
        y = y + 1.0
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, [1.0])


def test_backward_argument_errors():
    x = Tensor(np.ones((2, 2)), requires_grad=True)
    with pytest.raises(ValueError, match=r"backward\(\): grad must be given for a tensor"):
        (x * 2).backward()
    with pytest.raises(ValueError, match=r"backward\(\): grad must have the tensor's shape"):
        (x * 2).backward(np.ones(3))
    (x * 2).backward(np.ones((2, 2)))
    np.testing.assert_array_equal(x.grad, 2.0)
    with pytest.raises(TypeError, match=r"Tensor\(\): requires_grad needs a floating-point"):
        Tensor(np.arange(3), requires_grad=True)
    with pytest.raises(TypeError, match=r"Tensor.__pow__\(\): exponent must be a real scalar"):
        _ = x ** Tensor(np.ones(1))


def test_leaf_gradients_never_share_memory():
    # A leaf keeps the backward pass's gradient array when nothing else holds it; one
    # array reaching two leaves (both parents of a sum), or a view, is copied.
    a, b = ag.Tensor(np.ones(3), requires_grad=True), ag.Tensor(np.ones(3), requires_grad=True)
    (a + b).sum().backward()
    assert not np.shares_memory(a.grad, b.grad)
    a.grad[...] = 5.0
    np.testing.assert_array_equal(b.grad, np.ones(3))
    c = ag.Tensor(np.ones((2, 3)), requires_grad=True)
    out = c.reshape(6)
    g = np.arange(6.0)
    out.backward(g)
    assert not np.shares_memory(c.grad, g)
    g[...] = -1.0
    np.testing.assert_array_equal(c.grad, np.arange(6.0).reshape(2, 3))
