"""Reverse-mode automatic differentiation on NumPy arrays.

A :class:`Tensor` wraps a NumPy array. Every operation on tensors that need a
gradient records its inputs and a backward function; :meth:`Tensor.backward`
walks that record in reverse topological order and accumulates gradients in
the ``grad`` of the leaf tensors (those created by the user, such as layer
weights or an image being optimised). The heavy operations (convolution,
pooling, matrix products, Gram matrices) call the native kernels of
:mod:`cnnkit.ops` in both directions.

Each operation's backward sits next to its forward: a backward function gets
the gradient with respect to the output and returns one gradient (or None)
per input. Gradients of broadcast inputs are summed back to the input's shape.

Examples
--------
>>> x = Tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
>>> (x * x).sum().backward()
>>> x.grad
array([2., 4., 6.])
"""

from __future__ import annotations

import contextlib
import math
import sys
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from . import ops

__all__ = [
    "Tensor",
    "abs",
    "avg_pool",
    "batch_norm",
    "clip",
    "concat",
    "conv",
    "conv_transpose",
    "dropout",
    "elu",
    "enable_grad",
    "exp",
    "gelu",
    "global_avg_pool",
    "global_max_pool",
    "gram",
    "hard_sigmoid",
    "hard_swish",
    "is_grad_enabled",
    "leaky_relu",
    "log",
    "log_sigmoid",
    "log_softmax",
    "logsumexp",
    "matmul",
    "max_pool",
    "maximum",
    "minimum",
    "mish",
    "no_grad",
    "pad",
    "relu",
    "relu6",
    "roi_align",
    "roi_pool",
    "selu",
    "sigmoid",
    "silu",
    "softmax",
    "softplus",
    "softsign",
    "sqrt",
    "square",
    "stack",
    "tanh",
    "upsample",
    "where",
]

_mode = threading.local()


def is_grad_enabled() -> bool:
    """Whether operations on this thread currently record a graph."""
    return getattr(_mode, "enabled", True)


@contextlib.contextmanager
def _grad_mode(enabled: bool) -> Iterator[None]:
    previous = is_grad_enabled()
    _mode.enabled = enabled
    try:
        yield
    finally:
        _mode.enabled = previous


def no_grad() -> contextlib.AbstractContextManager[None]:
    """Context manager in which operations record no graph (inference, updates)."""
    return _grad_mode(False)


def enable_grad() -> contextlib.AbstractContextManager[None]:
    """Context manager that turns recording back on inside :func:`no_grad`."""
    return _grad_mode(True)


Backward = Callable[[np.ndarray], Sequence["np.ndarray | None"]]


class Tensor:
    """A NumPy array with an optional gradient.

    Parameters
    ----------
    data : array_like
        The value. Its dtype is kept (use float32 for speed, float64 for
        gradient checks); a Tensor passed here is unwrapped.
    requires_grad : bool, default False
        Whether :meth:`backward` should compute this tensor's gradient.
        Only floating-point tensors can require gradients.
    name : str, optional
        A label shown in ``repr``.

    Attributes
    ----------
    data : numpy.ndarray
    grad : numpy.ndarray or None
        The accumulated gradient of a leaf tensor after :meth:`backward`;
        call :meth:`zero_grad` (or set it to None) between steps.
    """

    __slots__ = ("_backward", "_parents", "data", "grad", "name", "requires_grad")
    # Makes `ndarray + Tensor` call Tensor.__radd__ instead of broadcasting elementwise.
    __array_priority__ = 1000

    def __init__(
        self,
        data: Any,
        requires_grad: bool = False,
        *,
        dtype: Any = None,
        name: str | None = None,
    ) -> None:
        if isinstance(data, Tensor):
            data = data.data
        array = np.asarray(data, dtype=dtype)
        if requires_grad and array.dtype.kind != "f":
            raise TypeError(
                f"Tensor(): requires_grad needs a floating-point dtype, got {array.dtype}"
            )
        self.data: np.ndarray = array
        self.grad: np.ndarray | None = None
        self.requires_grad = bool(requires_grad)
        self.name = name
        self._parents: tuple[Tensor, ...] = ()
        self._backward: Backward | None = None

    # -- plain properties -------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def size(self) -> int:
        return self.data.size

    @property
    def is_leaf(self) -> bool:
        return self._backward is None

    def numpy(self) -> np.ndarray:
        """The underlying array (not a copy)."""
        return self.data

    def item(self) -> float:
        return self.data.item()

    def detach(self) -> Tensor:
        """The same data, cut from the graph."""
        return Tensor(self.data)

    def zero_grad(self) -> None:
        self.grad = None

    def __len__(self) -> int:
        return len(self.data)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return self.data if dtype is None else self.data.astype(dtype, copy=False)

    def __repr__(self) -> str:
        extra = ", requires_grad=True" if self.requires_grad else ""
        label = f", name={self.name!r}" if self.name else ""
        return f"Tensor({np.array2string(self.data, threshold=20)}{extra}{label})"

    # -- backward pass ----------------------------------------------------------
    def backward(self, grad: Any = None) -> None:
        """Accumulate d(self)/d(leaf) into the ``grad`` of every leaf that requires it.

        Parameters
        ----------
        grad : array_like, optional
            The gradient with respect to this tensor; may be omitted for a
            tensor of one element (a loss), where it is 1.
        """
        if not self.requires_grad:
            raise RuntimeError(
                "backward(): this tensor does not require a gradient (no input of the "
                "computation had requires_grad=True, or it was computed under no_grad())"
            )
        if grad is None:
            if self.data.size != 1:
                raise ValueError(
                    f"backward(): grad must be given for a tensor of shape {self.shape}; "
                    "only a one-element tensor gets the implicit gradient 1"
                )
            grad = np.ones_like(self.data)
        else:
            grad = np.asarray(grad.data if isinstance(grad, Tensor) else grad, self.dtype)
            if grad.shape != self.shape:
                raise ValueError(
                    f"backward(): grad must have the tensor's shape {self.shape}, got {grad.shape}"
                )
        order = _topological_order(self)
        grads: dict[int, np.ndarray] = {id(self): grad}
        for node in reversed(order):
            g = grads.pop(id(node), None)
            if g is None:
                continue
            if node._backward is None:
                node.grad = _owned(g) if node.grad is None else node.grad + g
                continue
            for parent, pg in zip(node._parents, node._backward(g)):
                if pg is None or not parent.requires_grad:
                    continue
                pg = _sum_to_shape(np.asarray(pg), parent.shape).astype(parent.dtype, copy=False)
                key = id(parent)
                grads[key] = pg if key not in grads else grads[key] + pg
            pg = None  # no lingering reference to the last one: _owned counts them

    # -- operators --------------------------------------------------------------
    def __add__(self, other: Any) -> Tensor:
        return _add(self, _lift(other, self))

    def __radd__(self, other: Any) -> Tensor:
        return _add(_lift(other, self), self)

    def __sub__(self, other: Any) -> Tensor:
        return _sub(self, _lift(other, self))

    def __rsub__(self, other: Any) -> Tensor:
        return _sub(_lift(other, self), self)

    def __mul__(self, other: Any) -> Tensor:
        return _mul(self, _lift(other, self))

    def __rmul__(self, other: Any) -> Tensor:
        return _mul(_lift(other, self), self)

    def __truediv__(self, other: Any) -> Tensor:
        return _div(self, _lift(other, self))

    def __rtruediv__(self, other: Any) -> Tensor:
        return _div(_lift(other, self), self)

    def __matmul__(self, other: Any) -> Tensor:
        return matmul(self, _lift(other, self))

    def __rmatmul__(self, other: Any) -> Tensor:
        return matmul(_lift(other, self), self)

    def __neg__(self) -> Tensor:
        return _record(-self.data, (self,), lambda g: (-g,))

    def __pow__(self, exponent: float) -> Tensor:
        if isinstance(exponent, Tensor) or np.ndim(exponent) != 0:
            raise TypeError(
                f"Tensor.__pow__(): exponent must be a real scalar, got {type(exponent).__name__}"
            )
        p = float(exponent)
        x = self.data
        return _record(x**p, (self,), lambda g: (g * p * x ** (p - 1),))

    def __getitem__(self, index: Any) -> Tensor:
        if isinstance(index, Tensor):
            index = index.data
        x = self.data
        basic = _is_basic_index(index)

        def backward(g: np.ndarray) -> tuple[np.ndarray]:
            full = np.zeros_like(x)
            if basic:  # each element selected at most once
                full[index] = g
            else:
                np.add.at(full, index, g)
            return (full,)

        return _record(x[index], (self,), backward)

    # -- methods mirroring NumPy ------------------------------------------------
    def sum(self, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> Tensor:
        x = self.data
        return _record(
            x.sum(axis=_axes(axis), keepdims=keepdims),
            (self,),
            lambda g: (np.broadcast_to(_keep(g, x.ndim, axis, keepdims), x.shape),),
        )

    def mean(self, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> Tensor:
        x = self.data
        out = np.asarray(x.mean(axis=_axes(axis), keepdims=keepdims))
        scale = out.size / x.size
        return _record(
            out,
            (self,),
            lambda g: (np.broadcast_to(_keep(g, x.ndim, axis, keepdims) * scale, x.shape),),
        )

    def max(self, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> Tensor:
        x = self.data
        out = x.max(axis=_axes(axis), keepdims=True)

        def backward(g: np.ndarray) -> tuple[np.ndarray]:
            # Ties share the gradient equally, so the result is symmetric in them.
            winners = x == out
            share = winners / winners.sum(axis=_axes(axis), keepdims=True)
            return (share * _keep(g, x.ndim, axis, keepdims),)

        value = out if keepdims else np.squeeze(out, axis=_axes(axis))
        return _record(value, (self,), backward)

    def reshape(self, *shape: Any) -> Tensor:
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        x = self.data
        return _record(x.reshape(shape), (self,), lambda g: (g.reshape(x.shape),))

    def flatten(self, start_axis: int = 1) -> Tensor:
        """Merge the axes from ``start_axis`` on (the batch axis stays by default)."""
        return self.reshape((*self.shape[:start_axis], -1))

    def transpose(self, *axes: int) -> Tensor:
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = tuple(axes[0])
        perm = axes or tuple(reversed(range(self.ndim)))
        inverse = tuple(np.argsort(perm))
        return _record(self.data.transpose(perm), (self,), lambda g: (g.transpose(inverse),))

    @property
    def T(self) -> Tensor:
        return self.transpose()

    def astype(self, dtype: Any) -> Tensor:
        source = self.dtype
        return _record(self.data.astype(dtype), (self,), lambda g: (g.astype(source),))


# -- graph plumbing ------------------------------------------------------------
def _record(data: np.ndarray, parents: tuple[Tensor, ...], backward: Backward) -> Tensor:
    out = Tensor.__new__(Tensor)
    out.data = np.asarray(data)
    out.grad = None
    out.name = None
    out.requires_grad = is_grad_enabled() and any(p.requires_grad for p in parents)
    out._parents = parents if out.requires_grad else ()
    out._backward = backward if out.requires_grad else None
    return out


def _owned(g: np.ndarray) -> np.ndarray:
    """g itself when nothing else can see its memory, else a copy, for a leaf's ``grad``.

    A gradient is usually a fresh array that only the backward pass holds (the copy of a
    weight gradient was 1-2% of a training step); but one array may reach two leaves (the
    two parents of a sum), or a backward may hand back an array it keeps, or a view. Three
    references (the caller's name, this argument and getrefcount's own) mean no one else
    holds it (CPython).
    """
    if g.base is None and g.flags.writeable and sys.getrefcount(g) <= 3:
        return g
    return g.copy()


def _topological_order(root: Tensor) -> list[Tensor]:
    # Iterative depth-first search: deep networks would overflow Python's recursion limit.
    order: list[Tensor] = []
    seen = {id(root)}
    stack: list[tuple[Tensor, int]] = [(root, 0)]
    while stack:
        node, i = stack.pop()
        if i < len(node._parents):
            stack.append((node, i + 1))
            parent = node._parents[i]
            if parent.requires_grad and id(parent) not in seen:
                seen.add(id(parent))
                stack.append((parent, 0))
        else:
            order.append(node)
    return order


def _lift(value: Any, like: Tensor) -> Tensor:
    """A tensor for ``value``; Python scalars take the dtype of ``like``."""
    if isinstance(value, Tensor):
        return value
    if isinstance(value, (bool, int, float)) and like.dtype.kind == "f":
        return Tensor(np.asarray(value, dtype=like.dtype))
    return Tensor(value)


def _is_basic_index(index: Any) -> bool:
    parts = index if isinstance(index, tuple) else (index,)
    return all(p is None or p is Ellipsis or isinstance(p, (slice, int, np.integer)) for p in parts)


def _as_tensor(value: Any) -> Tensor:
    return value if isinstance(value, Tensor) else Tensor(value)


def _sum_to_shape(g: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Undo broadcasting: sum ``g`` over the axes that broadcasting added or stretched."""
    if g.shape == shape:
        return g
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, n in enumerate(shape) if n == 1 and g.shape[lead + i] != 1
    )
    return g.sum(axis=axes, keepdims=True).reshape(shape) if axes else g.reshape(shape)


def _axes(axis: int | Sequence[int] | None) -> Any:
    return tuple(axis) if isinstance(axis, (list, tuple)) else axis


def _keep(g: np.ndarray, ndim: int, axis: int | Sequence[int] | None, keepdims: bool) -> np.ndarray:
    """Re-insert the reduced axes of ``g`` so that it broadcasts against the input."""
    if keepdims or axis is None:
        return g.reshape((1,) * ndim) if (axis is None and not keepdims) else g
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    return np.expand_dims(g, tuple(a % ndim for a in axes))


# -- elementwise arithmetic ------------------------------------------------------
def _add(a: Tensor, b: Tensor) -> Tensor:
    return _record(a.data + b.data, (a, b), lambda g: (g, g))


def _sub(a: Tensor, b: Tensor) -> Tensor:
    return _record(a.data - b.data, (a, b), lambda g: (g, -g))


def _mul(a: Tensor, b: Tensor) -> Tensor:
    x, y = a.data, b.data
    return _record(
        x * y,
        (a, b),
        lambda g: (g * y if a.requires_grad else None, g * x if b.requires_grad else None),
    )


def _div(a: Tensor, b: Tensor) -> Tensor:
    x, y = a.data, b.data
    out = x / y
    return _record(
        out,
        (a, b),
        lambda g: (g / y if a.requires_grad else None, -g * out / y if b.requires_grad else None),
    )


def _unary(x: Any, value: Callable[[np.ndarray], np.ndarray], slope) -> Tensor:
    """An elementwise op: ``slope(x, out)`` is d(out)/dx."""
    t = _as_tensor(x)
    out = value(t.data)
    return _record(out, (t,), lambda g: (g * slope(t.data, out),))


def exp(x: Any) -> Tensor:
    return _unary(x, np.exp, lambda x, out: out)


def log(x: Any) -> Tensor:
    return _unary(x, np.log, lambda x, out: 1 / x)


def sqrt(x: Any) -> Tensor:
    return _unary(x, np.sqrt, lambda x, out: 0.5 / out)


def square(x: Any) -> Tensor:
    return _unary(x, np.square, lambda x, out: 2 * x)


def abs(x: Any) -> Tensor:
    return _unary(x, np.abs, lambda x, out: np.sign(x))


def tanh(x: Any) -> Tensor:
    return _unary(x, np.tanh, lambda x, out: 1 - out * out)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    # exp of a non-positive number only: no overflow for large |x|.
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


def sigmoid(x: Any) -> Tensor:
    return _unary(x, _sigmoid, lambda x, out: out * (1 - out))


def softplus(x: Any) -> Tensor:
    """``log(1 + exp(x))``, computed without overflow."""
    return _unary(x, lambda x: np.logaddexp(np.zeros((), x.dtype), x), lambda x, out: _sigmoid(x))


def log_sigmoid(x: Any) -> Tensor:
    """``log(sigmoid(x)) = -softplus(-x)``, without overflow."""
    return _unary(
        x, lambda x: -np.logaddexp(np.zeros((), x.dtype), -x), lambda x, out: _sigmoid(-x)
    )


def relu(x: Any) -> Tensor:
    return _unary(x, lambda x: np.maximum(x, 0), lambda x, out: x > 0)


_erfc = np.frompyfunc(math.erfc, 1, 1)

# Numerical Recipes' erfc (Chebyshev fit; relative error below 1.2e-7 everywhere),
# coefficients of the exponent's polynomial in t = 1 / (1 + |x| / 2).
_ERFC = (
    -1.26551223,
    1.00002368,
    0.37409196,
    0.09678418,
    -0.18628806,
    0.27886807,
    -1.13520398,
    1.48851587,
    -0.82215223,
    0.17087277,
)


def _one_plus_erf(x: np.ndarray) -> np.ndarray:
    """``1 + erf(x) = erfc(-x)`` elementwise, without the cancellation of ``1 + erf`` for
    negative ``x``. NumPy has no erf and SciPy is no dependency: float64 uses math.erfc
    (exact, for gradient checks); float32 evaluates the fit above in float64, whose
    relative error (1.2e-7) is about one float32 ulp, several times faster per element."""
    if x.dtype != np.float32:
        return np.asarray(_erfc(-x), dtype=np.float64).astype(x.dtype, copy=False)
    z = np.abs(x.astype(np.float64))
    t = 1 / (1 + 0.5 * z)
    poly = np.full_like(t, _ERFC[-1])
    for c in _ERFC[-2::-1]:
        poly = poly * t + c
    erfc_z = t * np.exp(-z * z + poly)  # erfc(|x|)
    return np.where(x >= 0, 2 - erfc_z, erfc_z).astype(np.float32)


def gelu(x: Any, approximate: bool = False) -> Tensor:
    """Gaussian error linear unit ``x * Phi(x)``; ``approximate=True`` is the tanh form
    (Keras's default is the exact erf form)."""
    t = _as_tensor(x)
    if approximate:
        c = np.asarray(math.sqrt(2 / math.pi), t.dtype)

        def value(x: np.ndarray) -> np.ndarray:
            return 0.5 * x * (1 + np.tanh(c * (x + 0.044715 * x**3)))

        def slope(x: np.ndarray, out: np.ndarray) -> np.ndarray:
            th = np.tanh(c * (x + 0.044715 * x**3))
            return 0.5 * (1 + th) + 0.5 * x * (1 - th * th) * c * (1 + 3 * 0.044715 * x * x)

        return _unary(t, value, slope)
    s = np.asarray(1 / math.sqrt(2), t.dtype)
    k = np.asarray(1 / math.sqrt(2 * math.pi), t.dtype)
    return _unary(
        t,
        lambda x: 0.5 * x * _one_plus_erf(x * s),
        lambda x, out: 0.5 * _one_plus_erf(x * s) + x * k * np.exp(-0.5 * x * x),
    )


def silu(x: Any) -> Tensor:
    """``x * sigmoid(x)`` (Keras's swish)."""
    return _unary(
        x, lambda x: x * _sigmoid(x), lambda x, out: (s := _sigmoid(x)) * (1 + x * (1 - s))
    )


def elu(x: Any, alpha: float = 1.0) -> Tensor:
    """``x`` where positive, ``alpha * (exp(x) - 1)`` elsewhere."""
    t = _as_tensor(x)
    a = np.asarray(alpha, t.dtype)
    return _unary(
        t,
        lambda x: np.where(x > 0, x, a * np.expm1(np.minimum(x, 0))),
        lambda x, out: np.where(x > 0, 1, a * np.exp(np.minimum(x, 0))),
    )


_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


def selu(x: Any) -> Tensor:
    """``scale * elu(x, alpha)`` with the self-normalising constants of Klambauer et al."""
    return elu(x, _SELU_ALPHA) * _SELU_SCALE


def softsign(x: Any) -> Tensor:
    """``x / (|x| + 1)``."""
    return _unary(x, lambda x: x / (np.abs(x) + 1), lambda x, out: 1 / (np.abs(x) + 1) ** 2)


def relu6(x: Any) -> Tensor:
    """``min(max(x, 0), 6)``."""
    return _unary(x, lambda x: np.clip(x, 0, 6), lambda x, out: (x > 0) & (x < 6))


def hard_sigmoid(x: Any) -> Tensor:
    """``relu6(x + 3) / 6`` (Keras 3; Keras 2 used ``0.2 * x + 0.5``)."""
    return _unary(x, lambda x: np.clip(x / 6 + 0.5, 0, 1), lambda x, out: ((x > -3) & (x < 3)) / 6)


def hard_swish(x: Any) -> Tensor:
    """``x * relu6(x + 3) / 6`` (Keras's hard_silu)."""
    return _unary(
        x,
        lambda x: x * np.clip(x / 6 + 0.5, 0, 1),
        lambda x, out: np.where(x <= -3, 0, np.where(x >= 3, 1, x / 3 + 0.5)),
    )


def mish(x: Any) -> Tensor:
    """``x * tanh(softplus(x))``."""

    def value(x: np.ndarray) -> np.ndarray:
        return x * np.tanh(np.logaddexp(np.zeros((), x.dtype), x))

    def slope(x: np.ndarray, out: np.ndarray) -> np.ndarray:
        th = np.tanh(np.logaddexp(np.zeros((), x.dtype), x))
        return th + x * (1 - th * th) * _sigmoid(x)

    return _unary(x, value, slope)


def leaky_relu(x: Any, negative_slope: float = 0.2) -> Tensor:
    """``x`` where positive, ``negative_slope * x`` elsewhere (Keras's default slope 0.2)."""
    t = _as_tensor(x)
    s = np.asarray(negative_slope, dtype=t.dtype)
    return _unary(t, lambda x: np.where(x > 0, x, s * x), lambda x, out: np.where(x > 0, 1, s))


def clip(x: Any, low: float | None, high: float | None) -> Tensor:
    """Clip to ``[low, high]``; the gradient passes where the value was not clipped."""
    t = _as_tensor(x)
    return _unary(
        t,
        lambda x: np.clip(x, low, high),
        lambda x, out: (
            (x >= (-np.inf if low is None else low)) & (x <= (np.inf if high is None else high))
        ),
    )


def where(condition: Any, a: Any, b: Any) -> Tensor:
    """``a`` where ``condition`` holds, else ``b`` (gradients routed the same way)."""
    cond = np.asarray(condition.data if isinstance(condition, Tensor) else condition, bool)
    ta = _as_tensor(a)
    tb = _lift(b, ta)
    return _record(
        np.where(cond, ta.data, tb.data),
        (ta, tb),
        lambda g: (np.where(cond, g, 0), np.where(cond, 0, g)),
    )


def maximum(a: Any, b: Any) -> Tensor:
    """Elementwise maximum; a tie sends the gradient to ``a``."""
    ta = _as_tensor(a)
    tb = _lift(b, ta)
    return where(ta.data >= tb.data, ta, tb)


def minimum(a: Any, b: Any) -> Tensor:
    """Elementwise minimum; a tie sends the gradient to ``a``."""
    ta = _as_tensor(a)
    tb = _lift(b, ta)
    return where(ta.data <= tb.data, ta, tb)


# -- reductions along an axis --------------------------------------------------------
def logsumexp(x: Any, axis: int = -1, keepdims: bool = False) -> Tensor:
    t = _as_tensor(x)
    m = np.max(t.data, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    shifted = np.exp(t.data - m)
    total = shifted.sum(axis=axis, keepdims=True)
    out = np.log(total) + m

    def backward(g: np.ndarray) -> tuple[np.ndarray]:
        return ((g if keepdims else np.expand_dims(g, axis)) * (shifted / total),)

    return _record(out if keepdims else np.squeeze(out, axis), (t,), backward)


def softmax(x: Any, axis: int = -1) -> Tensor:
    t = _as_tensor(x)
    e = np.exp(t.data - t.data.max(axis=axis, keepdims=True))
    out = e / e.sum(axis=axis, keepdims=True)
    return _record(out, (t,), lambda g: (out * (g - (g * out).sum(axis=axis, keepdims=True)),))


def log_softmax(x: Any, axis: int = -1) -> Tensor:
    t = _as_tensor(x)
    shifted = t.data - t.data.max(axis=axis, keepdims=True)
    out = shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))
    return _record(out, (t,), lambda g: (g - np.exp(out) * g.sum(axis=axis, keepdims=True),))


# -- shapes ------------------------------------------------------------------------
def concat(tensors: Sequence[Any], axis: int = 0) -> Tensor:
    ts = tuple(_as_tensor(t) for t in tensors)
    cuts = np.cumsum([t.shape[axis] for t in ts])[:-1]
    return _record(
        concat_arrays([t.data for t in ts], axis),
        ts,
        lambda g: tuple(np.split(g, cuts, axis=axis)),
    )


def concat_arrays(arrays: Sequence[np.ndarray], axis: int) -> np.ndarray:
    """``np.concatenate(arrays, axis)``, by :func:`cnnkit.ops.concat` for float32 and
    float64 arrays: the same bits, copied on every thread and about 1.3x as fast on one
    (SqueezeNet's 55x55x(64+64) channel Concat). Other dtypes go to NumPy."""
    if arrays and all(a.dtype in _NATIVE_FLOATS for a in arrays) and arrays[0].ndim:
        return ops.concat(arrays, axis)
    return np.concatenate(arrays, axis=axis)


def stack(tensors: Sequence[Any], axis: int = 0) -> Tensor:
    ts = tuple(_as_tensor(t) for t in tensors)
    return _record(
        np.stack([t.data for t in ts], axis=axis),
        ts,
        lambda g: tuple(np.moveaxis(g, axis, 0)),
    )


def pad(x: Any, pad_width: Sequence[tuple[int, int]], value: float = 0.0) -> Tensor:
    """Constant padding, ``pad_width`` as in :func:`numpy.pad` (non-negative)."""
    t = _as_tensor(x)
    widths = [tuple(int(v) for v in p) for p in pad_width]
    inner = tuple(slice(b, b + n) for (b, _), n in zip(widths, t.shape))
    return _record(np.pad(t.data, widths, constant_values=value), (t,), lambda g: (g[inner],))


def _linear_resize_matrix(n: int, factor: int, dtype: np.dtype) -> np.ndarray:
    """``(n * factor, n)`` weights of linear interpolation with half-pixel centres
    (TensorFlow's ``half_pixel_centers``, torch's ``align_corners=False``)."""
    src = np.maximum((np.arange(n * factor) + 0.5) / factor - 0.5, 0)
    low = np.floor(src).astype(np.intp)
    high = np.minimum(low + 1, n - 1)
    frac = src - low
    m = np.zeros((n * factor, n))
    rows = np.arange(n * factor)
    np.add.at(m, (rows, low), 1 - frac)
    np.add.at(m, (rows, high), frac)
    return m.astype(dtype)


def upsample(x: Any, size: Sequence[int], interpolation: str = "nearest") -> Tensor:
    """Enlarge the spatial axes of channels-last ``x`` by the integer factors ``size``:
    ``"nearest"`` repeats values, ``"bilinear"`` (or linear along each axis) interpolates."""
    t = _as_tensor(x)
    size = tuple(int(s) for s in size)
    spatial = t.shape[1:-1]
    if len(size) != len(spatial):
        raise ValueError(
            f"upsample(): size must have one factor per spatial axis ({len(spatial)}), got {size}"
        )
    if interpolation == "nearest":
        out = t.data
        for axis, s in enumerate(size, start=1):
            out = np.repeat(out, s, axis=axis)

        def backward(g: np.ndarray) -> tuple[np.ndarray]:
            split = [t.shape[0]]
            for n, s in zip(spatial, size):
                split += [n, s]
            g = g.reshape(*split, t.shape[-1]).sum(axis=tuple(range(2, 2 * len(size) + 1, 2)))
            return (g,)

        return _record(out, (t,), backward)
    if interpolation != "bilinear":
        raise ValueError(
            f"upsample(): interpolation must be 'nearest' or 'bilinear', got {interpolation!r}"
        )
    mats = [_linear_resize_matrix(n, s, t.dtype) for n, s in zip(spatial, size)]

    def apply(a: np.ndarray, transpose: bool) -> np.ndarray:
        for axis, m in enumerate(mats, start=1):
            a = np.moveaxis(np.tensordot(m.T if transpose else m, a, axes=(1, axis)), 0, axis)
        return np.ascontiguousarray(a)

    return _record(apply(t.data, False), (t,), lambda g: (apply(g, True),))


# -- linear algebra and network layers on the native kernels ------------------------------
def _native(*arrays: np.ndarray) -> bool:
    dtype = arrays[0].dtype
    return dtype in (np.float32, np.float64) and all(a.dtype == dtype for a in arrays)


def _mm(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    # cnnkit's GEMM rather than NumPy's BLAS: OpenBLAS's threads spin after each call and
    # would take the cores from the OpenMP threads of the next convolution.
    if _native(a, b) and a.ndim in (2, 3) and b.ndim == 2:
        return ops.matmul(a, b)
    return np.matmul(a, b)


def matmul(a: Any, b: Any) -> Tensor:
    """Matrix product (NumPy's broadcasting rules); 2-D right operands use cnnkit's GEMM."""
    ta, tb = _as_tensor(a), _as_tensor(b)
    x, y = ta.data, tb.data
    if x.ndim < 2 or y.ndim < 2:
        raise ValueError(
            f"matmul(): operands must have at least 2 dimensions, got shapes {x.shape} and "
            f"{y.shape}"
        )

    def backward(g: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
        da = _mm(g, np.swapaxes(y, -1, -2)) if ta.requires_grad else None
        db = None
        if tb.requires_grad:
            if x.ndim == 2:
                db = _mm(x.T, g)
            elif y.ndim > 2:
                db = np.matmul(np.swapaxes(x, -1, -2), g)
            else:  # batch of rows times one matrix: fold the batch into the rows
                db = _mm(x.reshape(-1, x.shape[-1]).T, g.reshape(-1, g.shape[-1]))
        return da, db

    return _record(_mm(x, y), (ta, tb), backward)


# ReLU-fused convolutions hand the mask to a max pool that reads their output: the pool
# multiplies its small output gradient by the mask of its maxima (the elements it routes
# the gradient to) and marks the gradient it returns, and the convolution's backward then
# skips masking it again, which would read the whole, four times larger, output. Masking
# twice would give the same values, so a gradient that also comes from elsewhere (summed,
# hence unmarked) is simply masked as usual.
_RELU_BACKWARDS: weakref.WeakSet = weakref.WeakSet()  # backward functions of ReLU-fused convs
_RELU_MASKED: dict[int, weakref.ref] = {}  # id -> gradient arrays already masked


def _mark_relu_masked(g: np.ndarray) -> None:
    key = id(g)

    def forget(ref: weakref.ref, key: int = key) -> None:
        if _RELU_MASKED.get(key) is ref:
            del _RELU_MASKED[key]

    _RELU_MASKED[key] = weakref.ref(g, forget)


def _relu_masked(g: np.ndarray) -> bool:
    ref = _RELU_MASKED.get(id(g))
    return ref is not None and ref() is g


def conv(
    x: Any,
    w: Any,
    b: Any = None,
    *,
    stride: int | Sequence[int] = 1,
    padding: str | int | Sequence = "valid",
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
    activation: str | None = None,
    negative_slope: float = 0.2,
) -> Tensor:
    """Differentiable :func:`cnnkit.ops.conv` (channels-last, 1 to 3 spatial dimensions).

    With ``activation`` ("relu", "leaky_relu", "sigmoid", "relu6") the bias and activation are
    fused into the convolution, forward and backward (the mask is read from the output).
    """
    tx, tw = _as_tensor(x), _as_tensor(w)
    tb = None if b is None else _as_tensor(b)
    spec: dict[str, Any] = {
        "stride": stride,
        "padding": padding,
        "dilation": dilation,
        "groups": groups,
    }
    act: dict[str, Any] = {"activation": activation, "negative_slope": negative_slope}
    out = ops.conv(tx.data, tw.data, None if tb is None else tb.data, **spec, **act)
    parents = (tx, tw) if tb is None else (tx, tw, tb)

    def backward(g: np.ndarray) -> tuple[np.ndarray | None, ...]:
        need = [n for n, t in zip("xwb", parents) if t.requires_grad]
        mask = act if not (activation == "relu" and _relu_masked(g)) else {"activation": None}
        dx, dw, db = ops.conv_backward(tx.data, tw.data, g, need=need, y=out, **spec, **mask)
        return (dx, dw, db)[: len(parents)]

    if activation == "relu":
        _RELU_BACKWARDS.add(backward)
    if activation in (None, "relu") and not tx.requires_grad:
        # An input layer: a max pool reading its output may take the weight and bias
        # gradients itself (see max_pool).
        backward.pool_operands = (tx, tw, tb, spec, activation)  # type: ignore[attr-defined]
    return _record(out, parents, backward)


def dense(
    x: Any, w: Any, b: Any = None, *, activation: str | None = None, negative_slope: float = 0.2
) -> Tensor:
    """``activation(x @ w + b)`` for a 2-D ``x``, with the bias and activation fused into
    cnnkit's GEMM (:func:`cnnkit.ops.matmul`) and the backward mask read from the output.

    float32 or float64 operands of one dtype; others go through :func:`matmul` unfused.
    """
    tx, tw = _as_tensor(x), _as_tensor(w)
    tb = None if b is None else _as_tensor(b)
    arrays = (tx.data, tw.data) if tb is None else (tx.data, tw.data, tb.data)
    if tx.ndim != 2 or tw.ndim != 2 or not _native(*arrays):
        y = matmul(tx, tw)
        y = y if tb is None else y + tb
        fns = {"relu": relu, "sigmoid": sigmoid, "relu6": relu6}
        if activation == "leaky_relu":
            return leaky_relu(y, negative_slope)
        return fns[activation](y) if activation in fns else y
    act: dict[str, Any] = {"activation": activation, "negative_slope": negative_slope}
    out = ops.matmul(tx.data, tw.data, bias=None if tb is None else tb.data, **act)
    parents = (tx, tw) if tb is None else (tx, tw, tb)

    def backward(g: np.ndarray) -> tuple[np.ndarray | None, ...]:
        if activation not in (None, "linear"):
            g = ops.activation_backward(out, g, activation, negative_slope=negative_slope)
        dx = _mm(g, tw.data.T) if tx.requires_grad else None
        dw = _mm(tx.data.T, g) if tw.requires_grad else None
        db = _sum_to_shape(g, tb.shape) if tb is not None and tb.requires_grad else None
        return (dx, dw, db)[: len(parents)]

    return _record(out, parents, backward)


def conv_transpose(
    x: Any,
    w: Any,
    b: Any = None,
    *,
    output_shape: Sequence[int],
    stride: int | Sequence[int] = 1,
    padding: str | int | Sequence = "valid",
    dilation: int | Sequence[int] = 1,
) -> Tensor:
    """Transposed convolution: the input-gradient of :func:`conv` as a forward op.

    ``x`` ``(N, *small, C)`` is treated as the output gradient of a convolution with kernel
    ``w`` ``(*kernel, F, C)`` of an input of spatial shape ``output_shape``; the result has
    shape ``(N, *output_shape, F)``. ``stride``, ``padding`` and ``dilation`` are that
    convolution's, so its output positions must be ``small``.
    """
    tx, tw = _as_tensor(x), _as_tensor(w)
    tb = None if b is None else _as_tensor(b)
    spec: dict[str, Any] = {"stride": stride, "padding": padding, "dilation": dilation}
    # The convolution reads only the shape of its input for dx: a zero array is never touched
    # page by page (calloc), so the placeholder costs no memory traffic.
    big = np.zeros((tx.shape[0], *output_shape, tw.shape[-2]), tx.dtype)
    out = ops.conv_backward(big, tw.data, tx.data, need=("x",), **spec)[0]
    assert out is not None
    if tb is not None:
        out += tb.data
    parents = (tx, tw) if tb is None else (tx, tw, tb)

    def backward(g: np.ndarray) -> tuple[np.ndarray | None, ...]:
        dx = ops.conv(g, tw.data, **spec) if tx.requires_grad else None
        dw = (
            ops.conv_backward(g, tw.data, tx.data, need=("w",), **spec)[1]
            if tw.requires_grad
            else None
        )
        db = g.sum(axis=tuple(range(g.ndim - 1))) if tb is not None else None
        return (dx, dw, db)[: len(parents)]

    return _record(out, parents, backward)


def max_pool(
    x: Any,
    pool_size: int | Sequence[int],
    *,
    stride: int | Sequence[int] | None = None,
    padding: str | int | Sequence = "valid",
) -> Tensor:
    """Differentiable :func:`cnnkit.ops.max_pool`."""
    t = _as_tensor(x)
    spec: dict[str, Any] = {"stride": stride, "padding": padding}
    # The forward's argmax indices spare the backward a second search of every window.
    y, indices = ops.max_pool(t.data, pool_size, return_indices=True, **spec)
    conv_operands = getattr(t._backward, "pool_operands", None)
    if conv_operands is not None:
        return _max_pool_of_input_conv(y, indices, pool_size, spec, *conv_operands)
    after_relu = t._backward is not None and t._backward in _RELU_BACKWARDS

    def backward(g: np.ndarray) -> tuple[np.ndarray]:
        # After a ReLU-fused convolution, its mask at the maxima: y's (see _RELU_BACKWARDS).
        relu = y if after_relu else None
        dx = ops.max_pool_backward(t.data, g, pool_size, indices=indices, relu_output=relu, **spec)
        if after_relu:
            _mark_relu_masked(dx)
        return (dx,)

    return _record(y, (t,), backward)


def _max_pool_of_input_conv(
    y: np.ndarray,
    indices: np.ndarray,
    pool_size: int | Sequence[int],
    pool_spec: dict[str, Any],
    tx: Tensor,
    tw: Tensor,
    tb: Tensor | None,
    conv_spec: dict[str, Any],
    activation: str | None,
) -> Tensor:
    """The max pool of an input layer's convolution (its x takes no gradient), recorded
    with the convolution's weight and bias as parents: one backward call
    (:func:`cnnkit.ops.conv_max_pool_backward`) gives their gradients, with the bits of
    the pool's backward followed by the convolution's, without the pool's full-size
    gradient. Any other reader of the convolution's output still sends its gradient
    through the convolution's own backward, and the weight gradients add up.
    """
    parents = (tw,) if tb is None else (tw, tb)

    def backward(g: np.ndarray) -> tuple[np.ndarray, ...]:
        dw, db = ops.conv_max_pool_backward(
            tx.data,
            tw.data,
            g,
            indices,
            pool_size,
            **conv_spec,
            pool_stride=pool_spec["stride"],
            pool_padding=pool_spec["padding"],
            relu_output=y if activation == "relu" else None,
        )
        return (dw,) if tb is None else (dw, db)

    return _record(y, parents, backward)


def avg_pool(
    x: Any,
    pool_size: int | Sequence[int],
    *,
    stride: int | Sequence[int] | None = None,
    padding: str | int | Sequence = "valid",
) -> Tensor:
    """Differentiable :func:`cnnkit.ops.avg_pool`."""
    t = _as_tensor(x)
    spec: dict[str, Any] = {"stride": stride, "padding": padding}
    return _record(
        ops.avg_pool(t.data, pool_size, **spec),
        (t,),
        lambda g: (ops.avg_pool_backward(t.data, g, pool_size, **spec),),
    )


def global_avg_pool(x: Any) -> Tensor:
    """Differentiable :func:`cnnkit.ops.global_avg_pool`: ``(N, *spatial, C) -> (N, C)``."""
    t = _as_tensor(x)
    positions = int(np.prod(t.shape[1:-1]))
    return _record(
        ops.global_avg_pool(t.data),
        (t,),
        lambda g: (
            np.broadcast_to(
                (g / positions)[:, None, :], (t.shape[0], positions, t.shape[-1])
            ).reshape(t.shape),
        ),
    )


def global_max_pool(x: Any) -> Tensor:
    """Differentiable :func:`cnnkit.ops.global_max_pool`; the first maximum takes the gradient."""
    t = _as_tensor(x)
    n, c = t.shape[0], t.shape[-1]

    def backward(g: np.ndarray) -> tuple[np.ndarray]:
        flat = t.data.reshape(n, -1, c)
        first = np.argmax(flat, axis=1)
        dx = np.zeros_like(flat)
        np.put_along_axis(dx, first[:, None, :], g[:, None, :], axis=1)
        return (dx.reshape(t.shape),)

    return _record(ops.global_max_pool(t.data), (t,), backward)


def gram(x: Any, *, normalize: str | None = None) -> Tensor:
    """Differentiable :func:`cnnkit.ops.gram`: ``(N, *spatial, C) -> (N, C, C)``."""
    t = _as_tensor(x)
    return _record(
        ops.gram(t.data, normalize=normalize),
        (t,),
        lambda g: (ops.gram_backward(t.data, g, normalize=normalize),),
    )


def lrn(x: Any, size: int, *, alpha: float, beta: float, bias: float) -> Tensor:
    """Differentiable :func:`cnnkit.ops.lrn` (local response normalization over the last
    axis)."""
    t = _as_tensor(x)
    spec: dict[str, Any] = {"alpha": alpha, "beta": beta, "bias": bias}
    return _record(
        ops.lrn(t.data, size, **spec),
        (t,),
        lambda g: (ops.lrn_backward(t.data, g, size, **spec),),
    )


def roi_align(
    x: Any,
    boxes: Any,
    output_size: int | Sequence[int],
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    aligned: bool = False,
) -> Tensor:
    """Differentiable :func:`cnnkit.ops.roi_align`: ``(N, H, W, C) -> (K, out_h, out_w, C)``.

    The gradient flows to ``x`` only; ``boxes`` (an array or a list of arrays, or their
    Tensors) are data, as in torchvision.
    """
    t = _as_tensor(x)
    rois = _data(boxes)
    spec = (output_size, spatial_scale, sampling_ratio, aligned)
    return _record(
        ops.roi_align(t.data, rois, *spec),
        (t,),
        lambda g: (ops.roi_align_backward(t.data, rois, g, *spec),),
    )


def roi_pool(
    x: Any, boxes: Any, output_size: int | Sequence[int], spatial_scale: float = 1.0
) -> Tensor:
    """Differentiable :func:`cnnkit.ops.roi_pool`; each bin's maximal pixel takes its gradient."""
    t = _as_tensor(x)
    rois = _data(boxes)
    return _record(
        ops.roi_pool(t.data, rois, output_size, spatial_scale),
        (t,),
        lambda g: (ops.roi_pool_backward(t.data, rois, g, output_size, spatial_scale),),
    )


def _data(value: Any) -> Any:
    """The arrays inside a Tensor or a list/tuple of them (inputs that take no gradient)."""
    if isinstance(value, (list, tuple)):
        return type(value)(v.data if isinstance(v, Tensor) else v for v in value)
    return value.data if isinstance(value, Tensor) else value


def dropout(x: Any, rate: float, rng: np.random.Generator) -> Tensor:
    """Inverted dropout: zero each element with probability ``rate``, scale the rest.

    The survivors are divided by ``1 - rate`` so the expectation is unchanged
    (as Keras does in training).
    """
    t = _as_tensor(x)
    if not 0 <= rate < 1:
        raise ValueError(f"dropout(): rate must be in [0, 1), got {rate!r}")
    if rate == 0:
        return t
    mask = (rng.random(t.shape) >= rate).astype(t.dtype) / t.dtype.type(1 - rate)
    return _record(t.data * mask, (t,), lambda g: (g * mask,))


def batch_norm(
    x: Any, gamma: Any, beta: Any, *, epsilon: float
) -> tuple[Tensor, np.ndarray, np.ndarray]:
    """Batch normalisation over every axis but the last, with batch statistics (training).

    float32/float64 inputs run :func:`cnnkit.ops.batch_norm` and
    :func:`cnnkit.ops.batch_norm_backward` (statistics summed in float64); other dtypes,
    an empty batch or ``epsilon <= 0`` the NumPy formulas.

    Returns
    -------
    (y, mean, var)
        ``y = gamma * (x - mean) / sqrt(var + epsilon) + beta`` and the batch
        statistics (biased variance) for the moving averages.
    """
    tx, tg, tb = _as_tensor(x), _as_tensor(gamma), _as_tensor(beta)
    data = tx.data
    if _native_batch_norm(data, tg.data, tb.data, epsilon):
        # ops.batch_norm: about 5 passes over x where the NumPy below makes about 15.
        out, mean, var = ops.batch_norm(data, tg.data, tb.data, epsilon=epsilon)

        def native_backward(g: np.ndarray) -> tuple[np.ndarray | None, ...]:
            dx, dgamma, dbeta = ops.batch_norm_backward(
                data, g, tg.data, mean, var, epsilon=epsilon
            )
            return (dx if tx.requires_grad else None), dgamma, dbeta

        return _record(out, (tx, tg, tb), native_backward), mean, var
    axes = tuple(range(data.ndim - 1))
    count = data.size // data.shape[-1]
    mean = data.mean(axis=axes)
    centred = data - mean
    var = np.mean(centred * centred, axis=axes)
    inv_std = 1 / np.sqrt(var + data.dtype.type(epsilon))
    xhat = centred * inv_std
    out = tg.data * xhat + tb.data

    def backward(g: np.ndarray) -> tuple[np.ndarray | None, ...]:
        dbeta = g.sum(axis=axes)
        dgamma = (g * xhat).sum(axis=axes)
        dx = None
        if tx.requires_grad:
            dx = (tg.data * inv_std / count) * (count * g - dbeta - xhat * dgamma)
        return dx, dgamma, dbeta

    return _record(out, (tx, tg, tb), backward), mean, var


def _native_batch_norm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, epsilon: float) -> bool:
    """Whether :func:`cnnkit.ops.batch_norm` takes these: float32/float64 arrays, a
    non-empty batch of rows and epsilon > 0 (the NumPy formulas serve the rest)."""
    floats = all(a.dtype in _NATIVE_FLOATS for a in (x, gamma, beta))
    shapes = x.ndim >= 2 and gamma.shape == beta.shape == x.shape[-1:]
    return floats and shapes and x.size > 0 and epsilon > 0


_NATIVE_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
