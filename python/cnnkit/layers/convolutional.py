"""Convolution layers (1-D, 2-D, 3-D), channels-last, on :func:`cnnkit.autograd.conv`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .. import _validate, initializers
from .. import autograd as ag
from ..autograd import Tensor
from ..saving.registry import register_serializable
from .activations import _activation, _apply_activation, _fused
from .layer import Layer

__all__ = ["Conv1D", "Conv2D", "Conv3D"]


class _Conv(Layer):
    rank = 2
    layout = "(N, H, W, C)"

    def __init__(
        self,
        filters: int,
        kernel_size: int | Sequence[int],
        strides: int | Sequence[int] = 1,
        padding: str = "valid",
        dilation_rate: int | Sequence[int] = 1,
        groups: int = 1,
        activation: Any = None,
        use_bias: bool = True,
        kernel_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        where = f"{type(self).__name__}({self.name!r})"
        r = self.rank
        self.filters = _validate.integer(where, "filters", filters, minimum=1)
        self.kernel_size = _validate.integers(where, "kernel_size", kernel_size, r)
        self.strides = _validate.integers(where, "strides", strides, r)
        self.padding = _validate.choice(where, "padding", padding, ("valid", "same"))
        self.dilation_rate = _validate.integers(where, "dilation_rate", dilation_rate, r)
        self.groups = _validate.integer(where, "groups", groups, minimum=1)
        if self.filters % self.groups:
            raise ValueError(
                f"{where}: filters ({self.filters}) must be divisible by groups ({self.groups})"
            )
        self.activation, self._act = _activation(where, activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)

    def build(self, input_shape: tuple[int, ...]) -> None:
        self._need_rank(input_shape, self.rank + 2, self.layout)
        channels = input_shape[-1]
        if channels % self.groups:
            raise ValueError(
                f"{self._where()}: input channels ({channels}) must be divisible by groups "
                f"({self.groups})"
            )
        shape = (*self.kernel_size, channels // self.groups, self.filters)
        self.kernel = self.add_weight("kernel", shape, self.kernel_initializer)
        self.bias = (
            self.add_weight("bias", (self.filters,), self.bias_initializer)
            if self.use_bias
            else None
        )

    def call(self, x: Tensor, training: bool = False) -> Tensor:
        self._need_rank(x.shape, self.rank + 2, self.layout)
        fused = _fused(self.activation, self._act)
        y = ag.conv(
            x,
            self.kernel,
            self.bias,
            stride=self.strides,
            padding=self.padding,
            dilation=self.dilation_rate,
            groups=self.groups,
            activation=fused,
        )
        return y if fused is not None else _apply_activation(self._act, y)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": list(self.kernel_size),
            "strides": list(self.strides),
            "padding": self.padding,
            "dilation_rate": list(self.dilation_rate),
            "groups": self.groups,
            "activation": self.activation,
            "use_bias": self.use_bias,
            "kernel_initializer": initializers.serialize(self.kernel_initializer),
            "bias_initializer": initializers.serialize(self.bias_initializer),
        }


@register_serializable(package="cnnkit")
class Conv1D(_Conv):
    """1-D convolution over ``(N, L, C)``; kernel ``(k, C_in // groups, filters)``."""

    rank, layout = 1, "(N, L, C)"


@register_serializable(package="cnnkit")
class Conv2D(_Conv):
    """2-D convolution over ``(N, H, W, C)``; kernel ``(kh, kw, C_in // groups, filters)``.

    ``padding="same"`` follows Keras (``ceil(n / stride)`` outputs, odd pixel at the end).
    """

    rank, layout = 2, "(N, H, W, C)"


@register_serializable(package="cnnkit")
class Conv3D(_Conv):
    """3-D convolution over ``(N, D, H, W, C)``."""

    rank, layout = 3, "(N, D, H, W, C)"
