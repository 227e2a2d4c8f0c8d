"""Finite-difference gradient checks for autograd functions, layers and losses (float64)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from cnnkit.autograd import Tensor


def check_gradients(
    fn: Callable[..., Tensor],
    inputs: Sequence[np.ndarray],
    *,
    seed: int = 0,
    eps: float = 1e-6,
    rtol: float = 1e-5,
    atol: float = 1e-7,
) -> None:
    """Compare the tape's gradients of ``<fn(*inputs), r>`` with central differences.

    ``r`` is a fixed random weighting of the output, so every output element
    matters and no two share a coefficient. Every input must be float64.
    """
    arrays = [np.array(a, dtype=np.float64) for a in inputs]
    tensors = [Tensor(a, requires_grad=True) for a in arrays]
    out = fn(*tensors)
    weights = np.random.default_rng(seed).standard_normal(out.shape)
    (out * weights).sum().backward()

    def objective() -> float:
        return float(np.sum(fn(*[Tensor(a) for a in arrays]).data * weights))

    for i, (array, tensor) in enumerate(zip(arrays, tensors)):
        numeric = numeric_gradient(objective, array, eps)
        analytic = np.zeros_like(array) if tensor.grad is None else tensor.grad
        np.testing.assert_allclose(
            analytic, numeric, rtol=rtol, atol=atol, err_msg=f"gradient of input {i}"
        )


def numeric_gradient(objective: Callable[[], float], array: np.ndarray, eps: float) -> np.ndarray:
    """Central differences of ``objective()`` with respect to ``array``, changed in place
    one element at a time (and restored)."""
    numeric = np.zeros_like(array)
    flat, grad = array.reshape(-1), numeric.reshape(-1)
    for j in range(flat.size):
        kept = flat[j]
        flat[j] = kept + eps
        up = objective()
        flat[j] = kept - eps
        down = objective()
        flat[j] = kept
        grad[j] = (up - down) / (2 * eps)
    return numeric
