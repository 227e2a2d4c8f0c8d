"""Gradient-descent optimizers with the Keras 3 names, defaults and update formulas.

An optimizer updates *variables*: any objects with a ``.data`` attribute that
holds a floating-point NumPy array. Updates are written into that array in
place (the attribute is never rebound), so layers that hold the arrays see the
new values. Slot arrays (momentum, velocity, ...) have the variable's dtype and
are keyed by the variable's position in the list the optimizer was built with
(``build(variables)`` or the first ``apply_gradients``), so ``get_state()`` and
``set_state()`` move the state between optimizers and through model files.

Each step follows Keras 3's ``Optimizer.apply``: ``None`` gradients are
dropped, gradients are clipped (``clipnorm``, ``clipvalue`` or
``global_clipnorm``), decoupled weight decay ``var -= var * weight_decay * lr``
is applied, then the optimizer's own update with the learning rate at the
current ``iterations``, and ``iterations`` grows by one.

With ``use_ema`` the optimizer keeps an exponential moving average of the
variables after each step (``average = m * average + (1 - m) * var`` with
``m = ema_momentum``, 0 on the first step), copies it into the variables every
``ema_overwrite_frequency`` steps when that is set, and
:meth:`Optimizer.finalize_variable_values` (called at the end of ``fit``) copies
it in at the end, as Keras 3 does.

Not supported from Keras: ``loss_scale_factor``,
``gradient_accumulation_steps`` and per-variable weight-decay exclusion.
"""

from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from . import _validate, ops, reference
from . import schedules as _schedules
from .saving import registry
from .saving.registry import register_serializable
from .schedules import LearningRateSchedule

__all__ = [
    "SGD",
    "Adadelta",
    "Adagrad",
    "Adam",
    "AdamW",
    "Adamax",
    "Nadam",
    "Optimizer",
    "RMSprop",
    "deserialize",
    "get",
    "serialize",
]


def _opt_real(func: str, arg: str, value: Any) -> float | None:
    return None if value is None else _validate.real(func, arg, value, low=0.0, low_open=True)


class Optimizer:
    """Base class of the optimizers.

    Parameters
    ----------
    learning_rate : float or LearningRateSchedule
        A non-negative float, or a schedule evaluated at ``iterations``.
    weight_decay : float, optional
        Decoupled weight decay: before each update ``var -= var * weight_decay * lr``.
    clipnorm : float, optional
        Each gradient is rescaled so that its L2 norm is at most this.
    clipvalue : float, optional
        Each gradient element is clipped to ``[-clipvalue, clipvalue]``.
    global_clipnorm : float, optional
        All gradients are rescaled together so that their joint L2 norm is at
        most this. At most one of the three clipping options may be set.
    use_ema : bool, default False
        Keep an exponential moving average of the variables (see the module notes).
    ema_momentum : float in [0, 1], default 0.99
    ema_overwrite_frequency : int >= 1, optional
        Copy the average into the variables every this many steps.
    name : str, optional
        Defaults to the class's Keras name.

    Attributes
    ----------
    iterations : int
        The number of ``apply_gradients`` calls so far.
    """

    _default_name = "optimizer"
    # Slot names in the order the state lists them, e.g. ("momentum", "velocity").
    _slot_names: tuple[str, ...] = ()

    def __init__(
        self,
        learning_rate: float | LearningRateSchedule,
        weight_decay: float | None = None,
        clipnorm: float | None = None,
        clipvalue: float | None = None,
        global_clipnorm: float | None = None,
        name: str | None = None,
        use_ema: bool = False,
        ema_momentum: float = 0.99,
        ema_overwrite_frequency: int | None = None,
    ) -> None:
        f = f"{type(self).__name__}()"
        if not isinstance(use_ema, (bool, np.bool_)):
            raise TypeError(f"{f}: use_ema must be a bool, got {type(use_ema).__name__}")
        self.use_ema = bool(use_ema)
        self.ema_momentum = _validate.real(f, "ema_momentum", ema_momentum, low=0.0, high=1.0)
        if ema_overwrite_frequency is not None and (
            isinstance(ema_overwrite_frequency, bool)
            or not isinstance(ema_overwrite_frequency, numbers.Integral)
            or ema_overwrite_frequency < 1
        ):
            raise ValueError(
                f"{f}: ema_overwrite_frequency must be None or an int >= 1, "
                f"got {ema_overwrite_frequency!r}"
            )
        self.ema_overwrite_frequency = (
            None if ema_overwrite_frequency is None else int(ema_overwrite_frequency)
        )
        self.weight_decay = (
            None
            if weight_decay is None
            else _validate.real(f, "weight_decay", weight_decay, low=0.0)
        )
        self.clipnorm = _opt_real(f, "clipnorm", clipnorm)
        self.clipvalue = _opt_real(f, "clipvalue", clipvalue)
        self.global_clipnorm = _opt_real(f, "global_clipnorm", global_clipnorm)
        if sum(x is not None for x in (self.clipnorm, self.clipvalue, self.global_clipnorm)) > 1:
            raise ValueError(
                f"{f}: only one of clipnorm, clipvalue and global_clipnorm can be set, got "
                f"clipnorm={clipnorm}, clipvalue={clipvalue}, global_clipnorm={global_clipnorm}"
            )
        if name is not None and not isinstance(name, str):
            raise TypeError(f"{f}: name must be a str, got {type(name).__name__}")
        self.name = self._default_name if name is None else name
        self._learning_rate: float | LearningRateSchedule = self._check_lr(f, learning_rate)
        self.iterations = 0
        self.built = False
        self._variables: list[Any] = []
        self._index: dict[int, int] = {}
        self._slots: dict[str, list[np.ndarray | None]] = {}
        self._pending_state: dict[str, np.ndarray] | None = None

    # -- learning rate -----------------------------------------------------------------------

    @staticmethod
    def _check_lr(func: str, lr: Any) -> float | LearningRateSchedule:
        if isinstance(lr, LearningRateSchedule):
            return lr
        if isinstance(lr, bool) or not isinstance(lr, numbers.Real):
            raise TypeError(
                f"{func}: learning_rate must be a float or a LearningRateSchedule, "
                f"got {type(lr).__name__}"
            )
        return _validate.real(func, "learning_rate", lr, low=0.0)

    @property
    def learning_rate(self) -> float | LearningRateSchedule:
        """The learning rate as given: a float, or the schedule object.

        Assigning a float replaces a float rate; assigning a schedule replaces
        either. Assigning a float to an optimizer that holds a schedule raises
        :class:`TypeError`, as in Keras. :attr:`current_learning_rate` is the
        number used by the next update.
        """
        return self._learning_rate

    @learning_rate.setter
    def learning_rate(self, value: float | LearningRateSchedule) -> None:
        f = f"{type(self).__name__}.learning_rate"
        if not isinstance(value, LearningRateSchedule) and isinstance(
            self._learning_rate, LearningRateSchedule
        ):
            raise TypeError(
                f"{f}: this optimizer was created with a LearningRateSchedule as its "
                "learning_rate, hence its learning rate is not settable to a number; create "
                "the optimizer with a float learning_rate to change it during training"
            )
        self._learning_rate = self._check_lr(f, value)

    @property
    def current_learning_rate(self) -> float:
        """The learning rate at the current ``iterations`` (a float)."""
        lr = self._learning_rate
        if isinstance(lr, LearningRateSchedule):
            return float(lr(self.iterations))
        return float(lr)

    # -- variables and state -----------------------------------------------------------------

    def _check_variable(self, func: str, i: int, var: Any) -> np.ndarray:
        data = getattr(var, "data", None)
        if not isinstance(data, np.ndarray) or not np.issubdtype(data.dtype, np.floating):
            got = f"dtype {data.dtype}" if isinstance(data, np.ndarray) else type(data).__name__
            raise TypeError(
                f"{func}: variable {i} must have a .data attribute holding a floating-point "
                f"numpy array, got {got}"
            )
        if not data.flags.writeable:
            raise ValueError(f"{func}: variable {i} has a read-only .data array")
        return data

    def build(self, variables: Sequence[Any]) -> None:
        """Create the slot arrays for ``variables`` (once; later calls do nothing).

        The position of a variable in this list is its key in :meth:`get_state`.
        """
        if self.built:
            return
        f = f"{type(self).__name__}.build()"
        if isinstance(variables, (str, bytes)) or not isinstance(variables, Iterable):
            raise TypeError(f"{f}: variables must be a list, got {type(variables).__name__}")
        variables = list(variables)
        index: dict[int, int] = {}
        for i, var in enumerate(variables):
            self._check_variable(f, i, var)
            if id(var) in index:
                raise ValueError(
                    f"{f}: variable {i} is the same object as variable {index[id(var)]}"
                )
            index[id(var)] = i
        slots = {
            name: [
                np.full_like(v.data, self._slot_initial_value(name))
                if self._has_slot(name)
                else None
                for v in variables
            ]
            for name in self._all_slot_names()
        }
        pending = self._pending_state
        if pending is not None:
            self._validate_state(f"{type(self).__name__}.set_state()", pending, variables)
        self._variables, self._index, self._slots = variables, index, slots
        self.built = True
        if pending is not None:
            self._pending_state = None
            self._load_slots(pending)

    def _uses_slot(self, name: str) -> bool:
        return True

    def _has_slot(self, name: str) -> bool:
        return name == "average" or self._uses_slot(name)

    def _slot_initial_value(self, name: str) -> float:
        return 0.0

    def _all_slot_names(self) -> tuple[str, ...]:
        # The moving average is the base class's slot, listed after the optimizer's own.
        return (*self._slot_names, "average") if self.use_ema else self._slot_names

    def _state_keys(self, variables: Sequence[Any]) -> dict[str, tuple[int, ...]]:
        keys: dict[str, tuple[int, ...]] = {}
        for name in self._all_slot_names():
            if self._has_slot(name):
                for i, v in enumerate(variables):
                    keys[f"{name}/{i}"] = v.data.shape
        return keys

    def get_state(self) -> dict[str, np.ndarray]:
        """Return the iteration count and copies of the slot arrays.

        Keys: ``"iterations"`` (an int64 scalar array) and ``"SLOT/i"`` for
        slot ``SLOT`` of the ``i``-th variable of the build list.
        """
        state: dict[str, np.ndarray] = {"iterations": np.array(self.iterations, dtype=np.int64)}
        if self._pending_state is not None:
            # Loaded before build: hand back what will be loaded.
            for key, arr in self._pending_state.items():
                if key != "iterations":
                    state[key] = arr.copy()
            return state
        for name in self._all_slot_names():
            for i, slot in enumerate(self._slots.get(name, [])):
                if slot is not None:
                    state[f"{name}/{i}"] = slot.copy()
        return state

    def _validate_state(self, f: str, state: Mapping[str, Any], variables: Sequence[Any]) -> None:
        expected = self._state_keys(variables)
        given = {k for k in state if k != "iterations"}
        missing = sorted(set(expected) - given)
        extra = sorted(given - set(expected))
        if missing or extra:
            raise ValueError(
                f"{f}: state does not match this optimizer and its {len(variables)} variables: "
                f"missing keys {missing}, unexpected keys {extra}"
            )
        for key, shape in expected.items():
            if state[key].shape != shape:
                raise ValueError(
                    f"{f}: state[{key!r}] must have shape {shape}, got {state[key].shape}"
                )

    def set_state(self, state: Mapping[str, Any]) -> None:
        """Load a state from :meth:`get_state` (arrays are copied).

        Before the optimizer is built, the iteration count is set at once and
        the slot arrays are checked and loaded when it is built.

        Raises
        ------
        ValueError
            If keys or shapes do not match this optimizer's variables.
        """
        f = f"{type(self).__name__}.set_state()"
        if not isinstance(state, Mapping):
            raise TypeError(f"{f}: state must be a dict, got {type(state).__name__}")
        arrays: dict[str, np.ndarray] = {}
        for key, value in state.items():
            if not isinstance(key, str):
                raise TypeError(f"{f}: state keys must be str, got {type(key).__name__}")
            arr = np.array(value)  # a copy: later changes by the caller must not leak in
            if key != "iterations" and not (
                np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
            ):
                raise TypeError(
                    f"{f}: state[{key!r}] must be a numeric array, got dtype {arr.dtype}"
                )
            arrays[key] = arr
        if "iterations" not in arrays:
            raise ValueError(
                f"{f}: state must have an 'iterations' entry, got keys {sorted(arrays)}"
            )
        it = arrays["iterations"]
        if it.ndim != 0 or not np.issubdtype(it.dtype, np.integer) or int(it) < 0:
            raise ValueError(
                f"{f}: state['iterations'] must be a non-negative integer scalar, got {it!r}"
            )
        if self.built:
            self._validate_state(f, arrays, self._variables)
            self._load_slots(arrays)
        else:
            names = self._all_slot_names()
            bad = [k for k in arrays if k != "iterations" and k.split("/")[0] not in names]
            if bad:
                raise ValueError(
                    f"{f}: unexpected keys {sorted(bad)}; slots of {type(self).__name__} are "
                    f"{list(names)}"
                )
            self._pending_state = arrays
        self.iterations = int(it)

    def _load_slots(self, arrays: Mapping[str, np.ndarray]) -> None:
        for key, arr in arrays.items():
            if key == "iterations":
                continue
            name, i = key.split("/")
            slot = self._slots[name][int(i)]
            assert slot is not None  # built: every slot of a trainable variable exists
            slot[...] = arr.astype(slot.dtype, copy=False)

    @property
    def variables(self) -> list[Any]:
        """The variables the optimizer was built with, in state-key order."""
        return list(self._variables)

    # -- the step ----------------------------------------------------------------------------

    def _clip(self, grads: list[np.ndarray]) -> list[np.ndarray]:
        if self.clipnorm is not None:
            out = []
            for g in grads:
                norm = float(np.sqrt(np.sum(np.square(g, dtype=np.float64))))
                # g * c / max(norm, c): unchanged when the norm is within the limit.
                out.append(g * g.dtype.type(self.clipnorm / max(norm, self.clipnorm)))
            return out
        if self.global_clipnorm is not None:
            total = math.sqrt(sum(float(np.sum(np.square(g, dtype=np.float64))) for g in grads))
            c = self.global_clipnorm
            # A non-finite norm makes every gradient NaN, as Keras does, rather than hiding it.
            scale = c * min(1.0 / total, 1.0 / c) if total > 0 else 1.0
            if not math.isfinite(total):
                scale = math.nan
            return [g * g.dtype.type(scale) for g in grads]
        if self.clipvalue is not None:
            return [np.clip(g, -self.clipvalue, self.clipvalue) for g in grads]
        return grads

    def apply_gradients(self, grads_and_vars: Iterable[tuple[Any, Any]]) -> int:
        """Apply one update step.

        Parameters
        ----------
        grads_and_vars : iterable of (gradient or None, variable)
            Gradients are array-likes of the variable's shape, cast to its
            dtype; pairs whose gradient is None are skipped. On the first call
            (or :meth:`build`) the optimizer records the variables, and later
            calls may pass any subset of them.

        Returns
        -------
        int
            ``iterations`` after the step.
        """
        f = f"{type(self).__name__}.apply_gradients()"
        if isinstance(grads_and_vars, (str, bytes)) or not isinstance(grads_and_vars, Iterable):
            raise TypeError(
                f"{f}: grads_and_vars must be a list of (gradient, variable) pairs, "
                f"got {type(grads_and_vars).__name__}"
            )
        pairs = list(grads_and_vars)
        for i, pair in enumerate(pairs):
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise TypeError(
                    f"{f}: grads_and_vars[{i}] must be a (gradient, variable) pair, got {pair!r}"
                )
        if not self.built:
            self.build([v for _, v in pairs])
        grads: list[np.ndarray] = []
        variables: list[Any] = []
        seen: set[int] = set()
        for i, (g, v) in enumerate(pairs):
            if id(v) not in self._index:
                raise ValueError(
                    f"{f}: grads_and_vars[{i}] holds a variable this optimizer was not built with; "
                    "create a new optimizer for a new set of variables"
                )
            if id(v) in seen:
                raise ValueError(f"{f}: grads_and_vars[{i}] repeats a variable")
            seen.add(id(v))
            data = self._check_variable(f, i, v)
            if g is None:
                continue
            g = np.asarray(g)
            if not (np.issubdtype(g.dtype, np.floating) or np.issubdtype(g.dtype, np.integer)):
                raise TypeError(f"{f}: gradient {i} must be numeric, got dtype {g.dtype}")
            if g.shape != data.shape:
                raise ValueError(
                    f"{f}: gradient {i} must have the variable's shape {data.shape}, got {g.shape}"
                )
            grads.append(g.astype(data.dtype, copy=False))
            variables.append(v)
        grads = self._clip(grads)
        lr = self.current_learning_rate
        if self.weight_decay is not None and self.weight_decay > 0:
            for v in variables:
                v.data -= v.data * v.data.dtype.type(self.weight_decay * lr)
        self._before_updates()
        for g, v in zip(grads, variables):
            self._update(g, v.data, self._index[id(v)], lr)
        if self.use_ema:
            self._update_average()
        self.iterations += 1
        return self.iterations

    def _before_updates(self) -> None:
        """Per-step work shared by all variables (Nadam's momentum-cache product)."""

    def _update_average(self) -> None:
        # Every built variable, not only those with a gradient this step, as Keras.
        m = self.ema_momentum if self.iterations != 0 else 0.0
        for i, v in enumerate(self._variables):
            avg = self._slot("average", i)
            t = avg.dtype.type
            avg *= t(m)
            avg += t(1.0 - m) * v.data
        freq = self.ema_overwrite_frequency
        if freq is not None and (self.iterations + 1) % freq == 0:
            self._overwrite_with_average()

    def _overwrite_with_average(self) -> None:
        for i, v in enumerate(self._variables):
            v.data[...] = self._slot("average", i)

    def finalize_variable_values(self) -> None:
        """With ``use_ema``, copy the moving averages into the variables (the end of
        ``fit`` calls this, as Keras 3 does); otherwise do nothing."""
        if self.use_ema and self.built and self.iterations > 0:
            self._overwrite_with_average()

    def _set_moment_rates(self, where: str, beta_1: Any, beta_2: Any, epsilon: Any) -> None:
        """The Adam family's decay rates of the two moments, in [0, 1), and epsilon >= 0."""
        self.beta_1 = _validate.real(where, "beta_1", beta_1, low=0.0, high=1.0, high_open=True)
        self.beta_2 = _validate.real(where, "beta_2", beta_2, low=0.0, high=1.0, high_open=True)
        self.epsilon = _validate.real(where, "epsilon", epsilon, low=0.0)

    def _slot(self, name: str, index: int) -> np.ndarray:
        return self._slots[name][index]  # type: ignore[return-value]

    def _update(self, grad: np.ndarray, var: np.ndarray, index: int, lr: float) -> None:
        raise NotImplementedError(
            f"{type(self).__name__}: an Optimizer subclass must implement _update"
        )

    # -- config ------------------------------------------------------------------------------

    def get_config(self) -> dict[str, Any]:
        """Return the constructor arguments (a schedule as a serialized dict)."""
        lr = self._learning_rate
        return {
            "name": self.name,
            "learning_rate": (
                _schedules.serialize(lr) if isinstance(lr, LearningRateSchedule) else lr
            ),
            "weight_decay": self.weight_decay,
            "clipnorm": self.clipnorm,
            "global_clipnorm": self.global_clipnorm,
            "clipvalue": self.clipvalue,
            "use_ema": self.use_ema,
            "ema_momentum": self.ema_momentum,
            "ema_overwrite_frequency": self.ema_overwrite_frequency,
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Optimizer:
        """Create an optimizer from the dictionary returned by :meth:`get_config`."""
        f = f"{cls.__name__}.from_config()"
        if not isinstance(config, Mapping):
            raise TypeError(f"{f}: config must be a dict, got {type(config).__name__}")
        config = dict(config)
        if isinstance(config.get("learning_rate"), Mapping):
            config["learning_rate"] = _schedules.deserialize(config["learning_rate"])
        # Subclasses forward the common arguments through **kwargs: check both signatures.
        own = inspect.signature(cls).parameters
        allowed = {n for n, p in own.items() if p.kind is not p.VAR_KEYWORD}
        if any(p.kind is p.VAR_KEYWORD for p in own.values()):
            allowed |= set(inspect.signature(Optimizer).parameters)
        unknown = sorted(set(config) - allowed)
        if unknown:
            raise TypeError(f"{f}: config does not fit: unexpected keys {unknown}")
        return cls(**config)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name!r} iterations={self.iterations}>"


def _native_update(var: np.ndarray) -> bool:
    """Whether the fused native update (:func:`cnnkit.ops.sgd_update`, ...) can update
    ``var`` in place: float32 or float64, C-contiguous. Its slots, made by ``full_like``,
    then are too. Other variables (float16, strided views) take the NumPy formulas of
    :mod:`cnnkit.reference`, which give the same bits."""
    return var.dtype in _NATIVE_DTYPES and var.flags.c_contiguous


_NATIVE_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


@register_serializable(package="cnnkit")
class SGD(Optimizer):
    """Gradient descent, optionally with momentum (Keras 3 formulation).

    Without momentum ``var -= lr * g``. With momentum the velocity
    ``m = momentum * m - lr * g`` is added to the variable, or with Nesterov
    ``var += momentum * m - lr * g`` (using the new ``m``). This equals
    ``torch.optim.SGD`` with ``dampening=0`` while the learning rate is constant.

    Parameters
    ----------
    learning_rate : float or LearningRateSchedule, default 0.01
    momentum : float in [0, 1], default 0.0
    nesterov : bool, default False
    **kwargs
        ``weight_decay``, ``clipnorm``, ``clipvalue``, ``global_clipnorm``, ``use_ema``,
        ``ema_momentum``, ``ema_overwrite_frequency``, ``name``.

    State slots: ``"momentum/i"`` when ``momentum > 0``.
    """

    _default_name = "SGD"
    _slot_names = ("momentum",)

    def __init__(
        self,
        learning_rate: float | LearningRateSchedule = 0.01,
        momentum: float = 0.0,
        nesterov: bool = False,
        **kwargs: Any,
    ) -> None:
        self.momentum = _validate.real("SGD()", "momentum", momentum, low=0.0, high=1.0)
        if not isinstance(nesterov, (bool, np.bool_)):
            raise TypeError(f"SGD(): nesterov must be a bool, got {type(nesterov).__name__}")
        self.nesterov = bool(nesterov)
        super().__init__(learning_rate, **kwargs)

    def _uses_slot(self, name: str) -> bool:
        return self.momentum != 0

    def _update(self, grad: np.ndarray, var: np.ndarray, index: int, lr: float) -> None:
        m = self._slot("momentum", index) if self.momentum != 0 else None
        # One fused native pass where it applies, else the same formulas in NumPy.
        update = ops.sgd_update if _native_update(var) else reference.sgd_update
        update(var, grad, m, learning_rate=lr, momentum=self.momentum, nesterov=self.nesterov)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}


@register_serializable(package="cnnkit")
class Adam(Optimizer):
    """Adam (Kingma & Ba), with the epsilon placement of Keras 3.

    ``m += (1 - beta_1) * (g - m)``, ``v += (1 - beta_2) * (g**2 - v)`` and
    ``var -= lr * sqrt(1 - beta_2**t) / (1 - beta_1**t) * m / (sqrt(v) + epsilon)``
    with ``t = iterations + 1``. With ``amsgrad`` the running maximum of ``v``
    replaces ``v`` in the last formula. ``torch.optim.Adam`` adds its epsilon
    after bias-correcting ``sqrt(v)``, so the two agree exactly when epsilon is 0.

    Parameters
    ----------
    learning_rate : float or LearningRateSchedule, default 0.001
    beta_1 : float in [0, 1), default 0.9
    beta_2 : float in [0, 1), default 0.999
    epsilon : float >= 0, default 1e-7
    amsgrad : bool, default False
    **kwargs
        ``weight_decay`` (which makes it AdamW), ``clipnorm``, ``clipvalue``,
        ``global_clipnorm``, ``name``.

    State slots: ``"momentum/i"``, ``"velocity/i"`` and, with amsgrad,
    ``"velocity_hat/i"``.
    """

    _default_name = "adam"
    _slot_names = ("momentum", "velocity", "velocity_hat")

    def __init__(
        self,
        learning_rate: float | LearningRateSchedule = 0.001,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-7,
        amsgrad: bool = False,
        **kwargs: Any,
    ) -> None:
        self._set_moment_rates("Adam()", beta_1, beta_2, epsilon)
        if not isinstance(amsgrad, (bool, np.bool_)):
            raise TypeError(f"Adam(): amsgrad must be a bool, got {type(amsgrad).__name__}")
        self.amsgrad = bool(amsgrad)
        super().__init__(learning_rate, **kwargs)

    def _uses_slot(self, name: str) -> bool:
        return name != "velocity_hat" or self.amsgrad

    def _update(self, grad: np.ndarray, var: np.ndarray, index: int, lr: float) -> None:
        step = self.iterations + 1
        alpha = lr * math.sqrt(1.0 - self.beta_2**step) / (1.0 - self.beta_1**step)
        m = self._slot("momentum", index)
        v = self._slot("velocity", index)
        v_hat = self._slot("velocity_hat", index) if self.amsgrad else None
        update = ops.adam_update if _native_update(var) else reference.adam_update
        update(
            var,
            grad,
            m,
            v,
            step_size=alpha,
            beta_1=self.beta_1,
            beta_2=self.beta_2,
            epsilon=self.epsilon,
            v_hat=v_hat,
        )

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "beta_1": self.beta_1,
            "beta_2": self.beta_2,
            "epsilon": self.epsilon,
            "amsgrad": self.amsgrad,
        }


@register_serializable(package="cnnkit")
class RMSprop(Optimizer):
    """RMSprop (Hinton), with the Keras 3 formulation.

    ``v = rho * v + (1 - rho) * g**2``; the step is
    ``lr * g / sqrt(v + epsilon)`` (centered: ``sqrt(v - a**2 + epsilon)`` with
    ``a = rho * a + (1 - rho) * g``), subtracted from the variable directly or,
    with momentum, through ``mom = momentum * mom + step``. Epsilon sits inside
    the square root (torch adds it outside), so the two agree when it is 0.

    Parameters
    ----------
    learning_rate : float or LearningRateSchedule, default 0.001
    rho : float in [0, 1), default 0.9
    momentum : float in [0, 1], default 0.0
    epsilon : float >= 0, default 1e-7
    centered : bool, default False
    **kwargs
        ``weight_decay``, ``clipnorm``, ``clipvalue``, ``global_clipnorm``, ``use_ema``,
        ``ema_momentum``, ``ema_overwrite_frequency``, ``name``.

    State slots: ``"velocity/i"``, ``"momentum/i"`` when ``momentum > 0`` and
    ``"average_gradient/i"`` when centered.
    """

    _default_name = "rmsprop"
    _slot_names = ("velocity", "momentum", "average_gradient")

    def __init__(
        self,
        learning_rate: float | LearningRateSchedule = 0.001,
        rho: float = 0.9,
        momentum: float = 0.0,
        epsilon: float = 1e-7,
        centered: bool = False,
        **kwargs: Any,
    ) -> None:
        self.rho = _validate.real("RMSprop()", "rho", rho, low=0.0, high=1.0, high_open=True)
        self.momentum = _validate.real("RMSprop()", "momentum", momentum, low=0.0, high=1.0)
        self.epsilon = _validate.real("RMSprop()", "epsilon", epsilon, low=0.0)
        if not isinstance(centered, (bool, np.bool_)):
            raise TypeError(f"RMSprop(): centered must be a bool, got {type(centered).__name__}")
        self.centered = bool(centered)
        super().__init__(learning_rate, **kwargs)

    def _uses_slot(self, name: str) -> bool:
        if name == "momentum":
            return self.momentum > 0
        if name == "average_gradient":
            return self.centered
        return True

    def _update(self, grad: np.ndarray, var: np.ndarray, index: int, lr: float) -> None:
        t = var.dtype.type
        rho = t(self.rho)
        v = self._slot("velocity", index)
        v *= rho
        v += t(1.0 - self.rho) * np.square(grad)
        if self.centered:
            a = self._slot("average_gradient", index)
            a *= rho
            a += t(1.0 - self.rho) * grad
            denominator = v - np.square(a) + t(self.epsilon)
        else:
            denominator = v + t(self.epsilon)
        increment = t(lr) * grad / np.sqrt(denominator)
        if self.momentum > 0:
            mom = self._slot("momentum", index)
            mom *= t(self.momentum)
            mom += increment
            var -= mom
        else:
            var -= increment

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "rho": self.rho,
            "momentum": self.momentum,
            "epsilon": self.epsilon,
            "centered": self.centered,
        }


@register_serializable(package="cnnkit")
class AdamW(Adam):
    """Adam with decoupled weight decay on by default (``weight_decay=0.004``), as Keras 3.

    Equals ``torch.optim.AdamW`` with the same ``weight_decay`` when epsilon is 0
    (the epsilon placement of :class:`Adam`).
    """

    _default_name = "adamw"

    def __init__(
        self,
        learning_rate: float | LearningRateSchedule = 0.001,
        weight_decay: float = 0.004,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-7,
        amsgrad: bool = False,
        **kwargs: Any,
    ) -> None:
        if weight_decay is None:
            raise ValueError("AdamW(): weight_decay must be a float >= 0, got None")
        super().__init__(
            learning_rate, beta_1, beta_2, epsilon, amsgrad, weight_decay=weight_decay, **kwargs
        )


@register_serializable(package="cnnkit")
class Nadam(Optimizer):
    """Adam with Nesterov momentum and Dozat's momentum schedule (Keras 3 formulation).

    With ``u_s = beta_1 * (1 - 0.5 * 0.96**s)`` and ``P_t = u_1 * ... * u_t``:
    ``m += (1 - beta_1) * (g - m)``, ``v += (1 - beta_2) * (g**2 - v)``,
    ``m_hat = u_{t+1} * m / (1 - P_t * u_{t+1}) + (1 - u_t) * g / (1 - P_t)`` and
    ``var -= lr * m_hat / (sqrt(v / (1 - beta_2**t)) + epsilon)``. This is
    ``torch.optim.NAdam`` with ``momentum_decay=1`` (torch's default 0.004 scales
    the exponent of 0.96) and the same epsilon.

    Parameters
    ----------
    learning_rate : float or LearningRateSchedule, default 0.001
    beta_1 : float in [0, 1), default 0.9
    beta_2 : float in [0, 1), default 0.999
    epsilon : float >= 0, default 1e-7
    **kwargs
        The common arguments of :class:`Optimizer`.

    State slots: ``"momentum/i"``, ``"velocity/i"``. The product ``P_t`` is a
    function of ``iterations`` and is recomputed from it after :meth:`set_state`.
    """

    _default_name = "nadam"
    _slot_names = ("momentum", "velocity")

    def __init__(
        self,
        learning_rate: float | LearningRateSchedule = 0.001,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-7,
        **kwargs: Any,
    ) -> None:
        self._set_moment_rates("Nadam()", beta_1, beta_2, epsilon)
        # (step, product of u_1..u_step): cached so a step costs O(1), not O(step).
        self._u_product = (0, 1.0)
        super().__init__(learning_rate, **kwargs)

    def _u(self, step: int) -> float:
        return self.beta_1 * (1.0 - 0.5 * 0.96**step)

    def _before_updates(self) -> None:
        step = self.iterations + 1
        done, product = self._u_product
        if done > step:  # iterations was set back by set_state
            done, product = 0, 1.0
        for s in range(done + 1, step + 1):
            product *= self._u(s)
        self._u_product = (step, product)

    def _update(self, grad: np.ndarray, var: np.ndarray, index: int, lr: float) -> None:
        t = var.dtype.type
        step = self.iterations + 1
        u_t, u_next = self._u(step), self._u(step + 1)
        product = self._u_product[1]
        m = self._slot("momentum", index)
        v = self._slot("velocity", index)
        m += (grad - m) * t(1.0 - self.beta_1)
        v += (np.square(grad) - v) * t(1.0 - self.beta_2)
        m_hat = m * t(u_next / (1.0 - product * u_next)) + grad * t((1.0 - u_t) / (1.0 - product))
        v_hat = v / t(1.0 - self.beta_2**step)
        var -= m_hat * t(lr) / (np.sqrt(v_hat) + t(self.epsilon))

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "beta_1": self.beta_1,
            "beta_2": self.beta_2,
            "epsilon": self.epsilon,
        }


@register_serializable(package="cnnkit")
class Adagrad(Optimizer):
    """Adagrad (Keras 3 formulation).

    ``acc += g**2`` (``acc`` starts at ``initial_accumulator_value``) and
    ``var -= lr * g / sqrt(acc + epsilon)``. ``torch.optim.Adagrad`` adds its
    epsilon outside the square root, so the two agree when epsilon is 0.

    Parameters
    ----------
    learning_rate : float or LearningRateSchedule, default 0.001
    initial_accumulator_value : float >= 0, default 0.1
    epsilon : float >= 0, default 1e-7
    **kwargs
        The common arguments of :class:`Optimizer`.

    State slots: ``"accumulator/i"``.
    """

    _default_name = "adagrad"
    _slot_names = ("accumulator",)

    def __init__(
        self,
        learning_rate: float | LearningRateSchedule = 0.001,
        initial_accumulator_value: float = 0.1,
        epsilon: float = 1e-7,
        **kwargs: Any,
    ) -> None:
        self.initial_accumulator_value = _validate.real(
            "Adagrad()", "initial_accumulator_value", initial_accumulator_value, low=0.0
        )
        self.epsilon = _validate.real("Adagrad()", "epsilon", epsilon, low=0.0)
        super().__init__(learning_rate, **kwargs)

    def _slot_initial_value(self, name: str) -> float:
        return self.initial_accumulator_value if name == "accumulator" else 0.0

    def _update(self, grad: np.ndarray, var: np.ndarray, index: int, lr: float) -> None:
        t = var.dtype.type
        acc = self._slot("accumulator", index)
        acc += np.square(grad)
        var -= t(lr) * grad / np.sqrt(acc + t(self.epsilon))

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "initial_accumulator_value": self.initial_accumulator_value,
            "epsilon": self.epsilon,
        }


@register_serializable(package="cnnkit")
class Adadelta(Optimizer):
    """Adadelta (Zeiler), Keras 3 formulation.

    ``a = rho * a + (1 - rho) * g**2``,
    ``d = -sqrt(b + epsilon) / sqrt(a + epsilon) * g``,
    ``b = rho * b + (1 - rho) * d**2`` and ``var += lr * d``. The same formula
    as ``torch.optim.Adadelta`` with the same epsilon.

    Parameters
    ----------
    learning_rate : float or LearningRateSchedule, default 0.001
    rho : float in [0, 1), default 0.95
    epsilon : float >= 0, default 1e-7
    **kwargs
        The common arguments of :class:`Optimizer`.

    State slots: ``"accumulated_grad/i"``, ``"accumulated_delta_var/i"``.
    """

    _default_name = "adadelta"
    _slot_names = ("accumulated_grad", "accumulated_delta_var")

    def __init__(
        self,
        learning_rate: float | LearningRateSchedule = 0.001,
        rho: float = 0.95,
        epsilon: float = 1e-7,
        **kwargs: Any,
    ) -> None:
        self.rho = _validate.real("Adadelta()", "rho", rho, low=0.0, high=1.0, high_open=True)
        self.epsilon = _validate.real("Adadelta()", "epsilon", epsilon, low=0.0)
        super().__init__(learning_rate, **kwargs)

    def _update(self, grad: np.ndarray, var: np.ndarray, index: int, lr: float) -> None:
        t = var.dtype.type
        rho, eps = t(self.rho), t(self.epsilon)
        a = self._slot("accumulated_grad", index)
        b = self._slot("accumulated_delta_var", index)
        a *= rho
        a += t(1.0 - self.rho) * np.square(grad)
        delta = -np.sqrt(b + eps) / np.sqrt(a + eps) * grad
        b *= rho
        b += t(1.0 - self.rho) * np.square(delta)
        var += t(lr) * delta

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "rho": self.rho, "epsilon": self.epsilon}


@register_serializable(package="cnnkit")
class Adamax(Optimizer):
    """Adamax, the infinity-norm variant of Adam (Keras 3 formulation).

    ``m += (1 - beta_1) * (g - m)``, ``u = max(beta_2 * u, |g|)`` and
    ``var -= lr * m / ((1 - beta_1**t) * (u + epsilon))``. ``torch.optim.Adamax``
    puts epsilon inside the maximum, so the two agree when epsilon is 0.

    Parameters
    ----------
    learning_rate : float or LearningRateSchedule, default 0.001
    beta_1 : float in [0, 1), default 0.9
    beta_2 : float in [0, 1), default 0.999
    epsilon : float >= 0, default 1e-7
    **kwargs
        The common arguments of :class:`Optimizer`.

    State slots: ``"momentum/i"``, ``"norm/i"``.
    """

    _default_name = "adamax"
    _slot_names = ("momentum", "norm")

    def __init__(
        self,
        learning_rate: float | LearningRateSchedule = 0.001,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-7,
        **kwargs: Any,
    ) -> None:
        self._set_moment_rates("Adamax()", beta_1, beta_2, epsilon)
        super().__init__(learning_rate, **kwargs)

    def _update(self, grad: np.ndarray, var: np.ndarray, index: int, lr: float) -> None:
        t = var.dtype.type
        step = self.iterations + 1
        m = self._slot("momentum", index)
        u = self._slot("norm", index)
        m += (grad - m) * t(1.0 - self.beta_1)
        np.maximum(u * t(self.beta_2), np.abs(grad), out=u)
        var -= m * t(lr / (1.0 - self.beta_1**step)) / (u + t(self.epsilon))

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "beta_1": self.beta_1,
            "beta_2": self.beta_2,
            "epsilon": self.epsilon,
        }


def serialize(optimizer: Optimizer) -> dict[str, Any]:
    """Return ``{"class_name": ..., "config": ...}`` for an optimizer of a registered class
    (TypeError for others, subclasses of the built-in ones included)."""
    return registry.serialize(optimizer, "optimizers.serialize()")


def deserialize(config: Mapping[str, Any]) -> Optimizer:
    """Create an optimizer from the output of :func:`serialize`.

    ``class_name`` is matched against the registered classes (ignoring case when no
    name matches exactly); nothing is imported or executed.
    """
    return registry.deserialize(config, Optimizer, "optimizers.deserialize()")


def get(identifier: str | Mapping[str, Any] | Optimizer) -> Optimizer:
    """Return an optimizer for a name, a serialized dict or an instance.

    Parameters
    ----------
    identifier : str, dict or Optimizer
        ``"sgd"``, ``"adam"``, ``"adamw"``, ``"nadam"``, ``"adagrad"``, ``"adadelta"``,
        ``"adamax"`` or ``"rmsprop"`` (any case, or any registered optimizer class name)
        give a new optimizer with default arguments; a dict is passed to :func:`deserialize`;
        an instance is returned as it is.
    """
    where = "optimizers.get()"
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, Mapping):
        return deserialize(identifier)
    if isinstance(identifier, str):
        cls = registry.get_registered_object(identifier, Optimizer)
        if cls is None:
            raise ValueError(
                f"{where}: unknown optimizer name {identifier!r}, expected one of 'sgd', "
                "'adam', 'adamw', 'nadam', 'adagrad', 'adadelta', 'adamax', 'rmsprop'"
            )
        return cls()
    raise TypeError(
        f"{where}: identifier must be a str, a dict or an Optimizer, "
        f"got {type(identifier).__name__}"
    )
