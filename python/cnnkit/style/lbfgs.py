"""Projected L-BFGS for images with pixels in a box.

Written here rather than taken from SciPy (``scipy.optimize.minimize(method="L-BFGS-B")``)
to keep NumPy the only run-time dependency, and because the problem is simple: the
direction comes from the usual two-loop recursion over the last ``memory`` curvature pairs,
components that would push a pixel already at a bound further out are dropped, the step is
projected onto the box and shortened by backtracking until the Armijo condition holds
(sufficient decrease along the projected step). A pair whose curvature ``s.y`` is not
positive (which the projection can cause) is skipped, so the implied inverse Hessian stays
positive definite. Dot products accumulate in float64 whatever the image's dtype.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import numpy as np

__all__ = ["LBFGSState", "iterate", "minimize"]

Objective = Callable[[np.ndarray], "tuple[float, np.ndarray]"]


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a.ravel().astype(np.float64), b.ravel().astype(np.float64)))


class LBFGSState:
    """The optimiser's state between iterations: the point, its cost and gradient, the pairs."""

    def __init__(self, x: np.ndarray, f: float, g: np.ndarray, memory: int) -> None:
        self.x, self.f, self.g = x, f, g
        self.pairs: deque[tuple[np.ndarray, np.ndarray, float]] = deque(maxlen=memory)
        self.evaluations = 1


def _direction(state: LBFGSState, lower: float, upper: float, first_step: float) -> np.ndarray:
    g = state.g
    if not state.pairs:
        scale = np.abs(g).max()
        d = -g * (first_step / scale) if scale > 0 else np.zeros_like(g)
    else:
        q = g.astype(np.float64)
        alphas = []
        for s, y, rho in reversed(state.pairs):
            a = rho * _dot(s, q)
            q -= a * y
            alphas.append(a)
        s, y, _ = state.pairs[-1]
        q *= _dot(s, y) / _dot(y, y)
        for (s, y, rho), a in zip(state.pairs, reversed(alphas)):
            b = rho * _dot(y, q)
            q += (a - b) * s
        d = (-q).astype(g.dtype)
    # Pixels at a bound that the direction pushes outward stay where they are.
    d[(state.x <= lower) & (d < 0)] = 0
    d[(state.x >= upper) & (d > 0)] = 0
    return d


def iterate(
    fun: Objective,
    state: LBFGSState,
    *,
    lower: float = 0.0,
    upper: float = 1.0,
    first_step: float = 0.05,
    max_backtracks: int = 12,
) -> bool:
    """One L-BFGS iteration in place; False when no step decreased the cost (converged or
    stuck), in which case the memory is cleared for a fresh start."""
    d = _direction(state, lower, upper, first_step)
    if _dot(d, state.g) >= 0:  # not a descent direction: restart from the gradient
        state.pairs.clear()
        d = _direction(state, lower, upper, first_step)
    t = 1.0
    for _ in range(max_backtracks):
        x_new = np.clip(state.x + t * d, lower, upper)
        step = x_new - state.x
        slope = _dot(state.g, step)
        if slope >= 0:
            break
        f_new, g_new = fun(x_new)
        state.evaluations += 1
        if np.isfinite(f_new) and f_new <= state.f + 1e-4 * slope:
            y = g_new - state.g
            sy = _dot(step, y)
            if sy > 1e-12 * _dot(y, y):
                state.pairs.append((step.astype(np.float64), y.astype(np.float64), 1.0 / sy))
            state.x, state.f, state.g = x_new, f_new, g_new
            return True
        t *= 0.5
    state.pairs.clear()
    return False


def minimize(
    fun: Objective,
    x0: np.ndarray,
    steps: int,
    *,
    memory: int = 10,
    lower: float = 0.0,
    upper: float = 1.0,
    callback: Callable[[int, LBFGSState], None] | None = None,
) -> LBFGSState:
    """Minimise ``fun(x) -> (cost, gradient)`` over ``lower <= x <= upper`` for ``steps``
    iterations (each one or more evaluations) from ``x0`` (clipped into the box)."""
    x = np.clip(x0, lower, upper)
    f, g = fun(x)
    state = LBFGSState(x, f, g, memory)
    for i in range(steps):
        iterate(fun, state, lower=lower, upper=upper)
        if callback is not None:
            callback(i, state)
    return state
