"""Convolution layers, channels-last, on :func:`cnnkit.autograd.conv`: 1-D to 3-D
convolutions (``Conv1D`` also ``padding="causal"``), their transposes (the input-gradient
of a convolution as a forward op), depthwise and separable convolutions."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .. import _validate, initializers, ops
from .. import autograd as ag
from ..autograd import Tensor
from ..saving.registry import register_serializable
from .activations import _activation, _apply_activation, _fused, _fused_inference
from .layer import Layer, Variable, add_bias, set_weight_options, weight_options_config
from .layer import data_format as _data_format

__all__ = [
    "Conv1D",
    "Conv1DTranspose",
    "Conv2D",
    "Conv2DTranspose",
    "Conv3D",
    "Conv3DTranspose",
    "DepthwiseConv2D",
    "SeparableConv2D",
]

_BIAS_OPTIONS = ("bias_regularizer", "bias_constraint")


def _padding(where: str, value: Any, rank: int, options: Sequence[str]) -> Any:
    """A padding name, or explicit ``(before, after)`` zeros per spatial axis: imported
    networks (ONNX, torch) pad symmetrically where Keras's "same" would put the odd pixel
    at the end, and the kernels take explicit pairs anyway."""
    if isinstance(value, str):
        return _validate.choice(where, "padding", value, options)
    if (
        isinstance(value, (list, tuple))
        and len(value) == rank
        and all(isinstance(p, (list, tuple)) and len(p) == 2 for p in value)
    ):
        return tuple(
            tuple(_validate.integer(where, "padding", v, minimum=0) for v in p) for p in value
        )
    listed = ", ".join(repr(o) for o in options)
    raise ValueError(
        f"{where}: padding must be one of {listed} or {rank} (before, after) pairs of ints "
        f">= 0, got {value!r}"
    )


def _output_length(n: int, k: int, s: int, padding: Any) -> int:
    """A convolution's output length (no dilation) for padding "same", "valid" or a
    (before, after) pair; below 1 where the window does not fit."""
    if padding == "same":
        return -(-n // s)
    before, after = (0, 0) if padding == "valid" else padding
    return (n + before + after - k) // s + 1


def _padding_config(value: Any) -> Any:
    return value if isinstance(value, str) else [list(p) for p in value]


class _Conv(Layer):
    kernel_regularizer: Any
    bias_regularizer: Any
    kernel_constraint: Any
    bias_constraint: Any
    rank = 2
    layout = "(N, H, W, C)"
    _paddings: tuple[str, ...] = ("valid", "same")

    def __init__(
        self,
        filters: int,
        kernel_size: int | Sequence[int],
        strides: int | Sequence[int] = 1,
        padding: str | Sequence[Sequence[int]] = "valid",
        data_format: Any = None,
        dilation_rate: int | Sequence[int] = 1,
        groups: int = 1,
        activation: Any = None,
        use_bias: bool = True,
        kernel_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        kernel_regularizer: Any = None,
        bias_regularizer: Any = None,
        kernel_constraint: Any = None,
        bias_constraint: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        where = f"{type(self).__name__}({self.name!r})"
        r = self.rank
        self.filters = _validate.integer(where, "filters", filters, minimum=1)
        self.kernel_size = _validate.integers(where, "kernel_size", kernel_size, r)
        self.strides = _validate.integers(where, "strides", strides, r)
        self.padding = _padding(where, padding, r, self._paddings)
        self.data_format = _data_format(where, data_format)
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
        set_weight_options(
            self,
            where,
            kernel_regularizer=kernel_regularizer,
            bias_regularizer=bias_regularizer,
            kernel_constraint=kernel_constraint,
            bias_constraint=bias_constraint,
        )

    def _kernel_shape(self, channels: int) -> tuple[int, ...]:
        return (*self.kernel_size, channels // self.groups, self.filters)

    def build(self, input_shape: tuple[int, ...]) -> None:
        self._need_rank(input_shape, self.rank + 2, self.layout)
        channels = input_shape[-1]
        if channels % self.groups:
            raise ValueError(
                f"{self._where()}: input channels ({channels}) must be divisible by groups "
                f"({self.groups})"
            )
        self.kernel = self.add_weight(
            "kernel",
            self._kernel_shape(channels),
            self.kernel_initializer,
            regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint,
        )
        self.bias = add_bias(self, self.filters)

    def _conv_padding(self) -> Any:
        if self.padding != "causal":
            return self.padding
        # Causal: all the padding before, so output t sees inputs up to t only.
        return tuple((d * (k - 1), 0) for k, d in zip(self.kernel_size, self.dilation_rate))

    def call(self, x: Tensor, training: bool = False) -> Tensor:
        self._need_rank(x.shape, self.rank + 2, self.layout)
        fused = _fused(self.activation, self._act)
        y = ag.conv(
            x,
            self.kernel,
            self.bias,
            stride=self.strides,
            padding=self._conv_padding(),
            dilation=self.dilation_rate,
            groups=self.groups,
            activation=fused,
        )
        return y if fused is not None else _apply_activation(self._act, y)

    def _inference_step(self) -> Callable[[np.ndarray], np.ndarray | None] | None:
        # The kernel's own call, minus the autograd wrapping: for no activation or a fused one.
        fused = _fused_inference(self.activation, self._act)
        if fused is None and self.activation != "linear":
            return None
        return self._kernel_step(fused)

    def _residual_step(
        self, rectify: bool = True
    ) -> Callable[[np.ndarray, np.ndarray], np.ndarray | None] | None:
        # For inference plans: relu(call(x) + residual) with the bits of an AddReLU after
        # this layer, or call(x) + residual with those of an Add (ops.conv's residual),
        # when the layer has no activation of its own.
        if self.activation != "linear":
            return None
        return self._kernel_step("relu" if rectify else None)

    def _stem_step(self) -> Callable[[np.ndarray, bool, Any], np.ndarray | None] | None:
        # For inference plans (functional._fold_pools): ops.conv_stem with the layer's
        # settings, from a channels-first input and/or with the max pool after it, given
        # as a function of the convolution's output size (the pool's settings for it).
        fused = _fused_inference(self.activation, self._act)
        if (fused is None and self.activation != "linear") or self.groups != 1:
            return None
        if any(d != 1 for d in self.dilation_rate):
            return None
        padding, rank = self._conv_padding(), self.rank + 2
        kernel, strides = self.kernel_size, self.strides
        pads = (padding,) * self.rank if isinstance(padding, str) else padding

        known: dict[tuple[Any, ...], dict[str, Any] | None] = {}  # the pool's, by input shape

        def step(x: np.ndarray, channels_first: bool, pool: Any) -> np.ndarray | None:
            if x.ndim != rank:
                return None
            key = (x.shape, channels_first, pool is None)
            if key not in known:
                spatial = x.shape[2:] if channels_first else x.shape[1:-1]
                out = [_output_length(*a) for a in zip(spatial, kernel, strides, pads)]
                known[key] = None if min(out) < 1 else {} if pool is None else pool(out)
            pool_args = known[key]
            if pool_args is None:
                return None
            bias = None if self.bias is None else self.bias.data
            return ops.conv_stem(  # type: ignore[no-any-return]
                x,
                self.kernel.data,
                bias,
                stride=strides,
                padding=padding,
                activation=fused,
                channels_first=channels_first,
                **pool_args,
            )

        return step

    def _concat_step(self) -> Callable[[np.ndarray, np.ndarray], np.ndarray | None] | None:
        # For inference plans: _inference_step's result written into out, a channel slice
        # of a concatenation's buffer (ops.conv's out), with the same bits.
        fused = _fused_inference(self.activation, self._act)
        if fused is None and self.activation != "linear":
            return None
        step = self._kernel_step(fused)

        def into(x: np.ndarray, out: np.ndarray) -> np.ndarray | None:
            # Weights assigned in another dtype make ops.conv's result that dtype, which
            # out cannot hold: the plan then calls the layer and copies its result.
            if self.kernel.data.dtype != out.dtype or (
                self.bias is not None and self.bias.data.dtype != out.dtype
            ):
                return None
            return step(x, None, out)

        return into

    def _kernel_step(self, activation: str | None) -> Callable[..., np.ndarray | None]:
        # ops.conv with the layer's settings and its weights at call time; None for an
        # input of another rank, which call() rejects with its own message.
        spec = {
            "stride": self.strides,
            "padding": self._conv_padding(),
            "dilation": self.dilation_rate,
            "groups": self.groups,
            "activation": activation,
        }
        rank = self.rank + 2

        def step(
            x: np.ndarray, residual: np.ndarray | None = None, out: np.ndarray | None = None
        ) -> np.ndarray | None:
            if x.ndim != rank:
                return None
            bias = None if self.bias is None else self.bias.data
            return ops.conv(x, self.kernel.data, bias, residual=residual, out=out, **spec)

        return step

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": list(self.kernel_size),
            "strides": list(self.strides),
            "padding": _padding_config(self.padding),
            "data_format": self.data_format,
            "dilation_rate": list(self.dilation_rate),
            "groups": self.groups,
            "activation": self.activation,
            "use_bias": self.use_bias,
            "kernel_initializer": initializers.serialize(self.kernel_initializer),
            "bias_initializer": initializers.serialize(self.bias_initializer),
            **weight_options_config(
                self, "kernel_regularizer", "kernel_constraint", *_BIAS_OPTIONS
            ),
        }


@register_serializable(package="cnnkit")
class Conv1D(_Conv):
    """1-D convolution over ``(N, L, C)``; kernel ``(k, C_in // groups, filters)``.

    ``padding="causal"`` pads ``dilation_rate * (kernel_size - 1)`` zeros at the start
    only, so output step ``t`` depends on inputs up to ``t`` (WaveNet-style, as Keras).
    """

    rank, layout = 1, "(N, L, C)"
    _paddings = ("valid", "same", "causal")


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


# -- transposed convolutions ------------------------------------------------------------------
def transpose_output_length(
    n: int, kernel: int, stride: int, padding: str, output_padding: int | None, dilation: int
) -> int:
    """Keras's ``deconv_output_length``: the spatial size a transposed convolution makes."""
    k = kernel + (kernel - 1) * (dilation - 1)
    if output_padding is None:
        return n * stride + max(k - stride, 0) if padding == "valid" else n * stride
    pad = k // 2 if padding == "same" else 0
    return (n - 1) * stride + k - 2 * pad + output_padding


class _ConvTranspose(_Conv):
    """Shared by Conv1DTranspose, Conv2DTranspose and Conv3DTranspose."""

    def __init__(
        self,
        filters: int,
        kernel_size: int | Sequence[int],
        strides: int | Sequence[int] = 1,
        padding: str | Sequence[Sequence[int]] = "valid",
        output_padding: int | Sequence[int] | None = None,
        data_format: Any = None,
        dilation_rate: int | Sequence[int] = 1,
        **kwargs: Any,
    ) -> None:
        if "groups" in kwargs:
            raise TypeError(f"{type(self).__name__}(): groups is not supported")
        super().__init__(
            filters,
            kernel_size,
            strides=strides,
            padding=padding,
            data_format=data_format,
            dilation_rate=dilation_rate,
            **kwargs,
        )
        where = f"{type(self).__name__}({self.name!r})"
        self.output_padding = (
            None
            if output_padding is None
            else _validate.integers(where, "output_padding", output_padding, self.rank, minimum=0)
        )
        if self.output_padding is not None:
            for op, s, d in zip(self.output_padding, self.strides, self.dilation_rate):
                if op >= s and op >= d:
                    raise ValueError(
                        f"{where}: output_padding must be smaller than the stride or the "
                        f"dilation rate, got output_padding {self.output_padding} with strides "
                        f"{self.strides} and dilation_rate {self.dilation_rate}"
                    )

    def _kernel_shape(self, channels: int) -> tuple[int, ...]:
        # (*kernel, filters, C_in): the kernel of the convolution this op transposes.
        return (*self.kernel_size, self.filters, channels)

    def output_size(self, spatial: Sequence[int]) -> tuple[int, ...]:
        ops = self.output_padding or (None,) * self.rank
        if not isinstance(self.padding, str):  # explicit pairs: the input-gradient's size
            return tuple(
                (n - 1) * s + (k - 1) * d + 1 - pb - pa + (op or 0)
                for n, k, s, op, d, (pb, pa) in zip(
                    spatial, self.kernel_size, self.strides, ops, self.dilation_rate, self.padding
                )
            )
        return tuple(
            transpose_output_length(n, k, s, self.padding, op, d)
            for n, k, s, op, d in zip(
                spatial, self.kernel_size, self.strides, ops, self.dilation_rate
            )
        )

    def call(self, x: Tensor, training: bool = False) -> Tensor:
        self._need_rank(x.shape, self.rank + 2, self.layout)
        if x.shape[-1] != self.kernel.shape[-1]:
            raise ValueError(
                f"{self._where()}: expected {self.kernel.shape[-1]} input channels, got shape "
                f"{x.shape}"
            )
        spatial = x.shape[1:-1]
        out = self.output_size(spatial)
        # The convolution of the output back must land on the input's size: it does
        # except when padding="same" with an even kernel and output_padding 0, where
        # Keras (TensorFlow) fails too.
        pads = ((0, 0),) * self.rank if isinstance(self.padding, str) else self.padding
        for n, m, k, s, d, (pb, pa) in zip(
            spatial, out, self.kernel_size, self.strides, self.dilation_rate, pads
        ):
            k_eff = (k - 1) * d + 1
            back = -(-m // s) if self.padding == "same" else (m + pb + pa - k_eff) // s + 1
            if back != n or m < 1:
                raise ValueError(
                    f"{self._where()}: output_padding {self.output_padding} with padding "
                    f"{self.padding!r}, kernel_size {self.kernel_size} and strides "
                    f"{self.strides} gives no output size that a convolution maps back to "
                    f"inputs of shape {x.shape}"
                )
        y = ag.conv_transpose(
            x,
            self.kernel,
            self.bias,
            output_shape=out,
            stride=self.strides,
            padding=self.padding,
            dilation=self.dilation_rate,
        )
        return _apply_activation(self._act, y)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        del config["groups"]
        config["output_padding"] = (
            None if self.output_padding is None else list(self.output_padding)
        )
        return config


@register_serializable(package="cnnkit")
class Conv1DTranspose(_ConvTranspose):
    """Transposed 1-D convolution over ``(N, L, C)``; kernel ``(k, filters, C_in)``.

    Output length as Keras: ``L * stride + max(k - stride, 0)`` ("valid") or
    ``L * stride`` ("same"); with ``output_padding`` ``(L - 1) * stride + k - 2 * pad +
    output_padding`` (``pad = k // 2`` for "same"), ``k`` the dilated kernel size.
    """

    rank, layout = 1, "(N, L, C)"


@register_serializable(package="cnnkit")
class Conv2DTranspose(_ConvTranspose):
    """Transposed 2-D convolution over ``(N, H, W, C)``; kernel ``(kh, kw, filters, C_in)``;
    output sizes per axis as :class:`Conv1DTranspose`."""

    rank, layout = 2, "(N, H, W, C)"


@register_serializable(package="cnnkit")
class Conv3DTranspose(_ConvTranspose):
    """Transposed 3-D convolution over ``(N, D, H, W, C)``; kernel
    ``(kd, kh, kw, filters, C_in)``."""

    rank, layout = 3, "(N, D, H, W, C)"


# -- depthwise and separable ---------------------------------------------------------------
@register_serializable(package="cnnkit")
class DepthwiseConv2D(Layer):
    """Each input channel convolved with its own ``depth_multiplier`` filters.

    The kernel is ``(kh, kw, C_in, depth_multiplier)`` as Keras; output channel
    ``c * depth_multiplier + m`` comes from input channel ``c`` (a grouped convolution
    with ``groups = C_in``).
    """

    depthwise_regularizer: Any
    bias_regularizer: Any
    depthwise_constraint: Any
    bias_constraint: Any

    def __init__(
        self,
        kernel_size: int | Sequence[int],
        strides: int | Sequence[int] = 1,
        padding: str | Sequence[Sequence[int]] = "valid",
        depth_multiplier: int = 1,
        data_format: Any = None,
        dilation_rate: int | Sequence[int] = 1,
        activation: Any = None,
        use_bias: bool = True,
        depthwise_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        depthwise_regularizer: Any = None,
        bias_regularizer: Any = None,
        depthwise_constraint: Any = None,
        bias_constraint: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        where = f"{type(self).__name__}({self.name!r})"
        self.kernel_size = _validate.integers(where, "kernel_size", kernel_size, 2)
        self.strides = _validate.integers(where, "strides", strides, 2)
        self.padding = _padding(where, padding, 2, ("valid", "same"))
        self.depth_multiplier = _validate.integer(
            where, "depth_multiplier", depth_multiplier, minimum=1
        )
        self.data_format = _data_format(where, data_format)
        self.dilation_rate = _validate.integers(where, "dilation_rate", dilation_rate, 2)
        self.activation, self._act = _activation(where, activation)
        self.use_bias = bool(use_bias)
        self.depthwise_initializer = initializers.get(depthwise_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        set_weight_options(
            self,
            where,
            depthwise_regularizer=depthwise_regularizer,
            bias_regularizer=bias_regularizer,
            depthwise_constraint=depthwise_constraint,
            bias_constraint=bias_constraint,
        )

    def build(self, input_shape: tuple[int, ...]) -> None:
        self._need_rank(input_shape, 4, "(N, H, W, C)")
        c = input_shape[-1]
        self.kernel = self._add_depthwise_kernel("kernel", c)
        self.bias = add_bias(self, c * self.depth_multiplier)

    def _add_depthwise_kernel(self, name: str, channels: int) -> Variable:
        return self.add_weight(
            name,
            (*self.kernel_size, channels, self.depth_multiplier),
            self.depthwise_initializer,
            regularizer=self.depthwise_regularizer,
            constraint=self.depthwise_constraint,
        )

    def _depthwise(
        self, x: Tensor, kernel: Tensor, bias: Tensor | None, activation: str | None = None
    ) -> Tensor:
        self._need_rank(x.shape, 4, "(N, H, W, C)")
        c = kernel.shape[2]
        if x.shape[-1] != c:
            raise ValueError(f"{self._where()}: expected {c} input channels, got shape {x.shape}")
        w, spec = self._grouped(kernel, activation)
        return ag.conv(x, w, bias, **spec)

    def _grouped(self, kernel: Any, activation: str | None) -> tuple[Any, dict[str, Any]]:
        # The depthwise kernel as a grouped convolution's (kh, kw, 1, C * multiplier) and
        # the convolution's settings: one group per input channel.
        c = kernel.shape[2]
        spec = {
            "stride": self.strides,
            "padding": self.padding,
            "dilation": self.dilation_rate,
            "groups": c,
            "activation": activation,
        }
        return kernel.reshape(*self.kernel_size, 1, c * kernel.shape[3]), spec

    def call(self, x: Tensor, training: bool = False) -> Tensor:
        # The activation in the kernel's store (relu6, MobileNet's, included), not in a
        # pass over the output after it.
        fused = _fused(self.activation, self._act)
        y = self._depthwise(x, self.kernel, self.bias, fused)
        return y if fused is not None else _apply_activation(self._act, y)

    def _inference_step(self) -> Callable[[np.ndarray], np.ndarray | None] | None:
        # call() minus the autograd wrapping, for no activation or a fused one; None for
        # inputs call() rejects with its own message.
        fused = _fused_inference(self.activation, self._act)
        if fused is None and self.activation != "linear":
            return None

        # The grouped kernel, remade only when the weights are another array (assigned):
        # _grouped's reshape and settings per call were a third of the step's Python at
        # batch 1. Kept only while it is a view of the weights, which in-place updates
        # (set_weights, the optimizers) then reach; a copy (a Fortran-ordered kernel's
        # reshape) is remade every call.
        made: list[Any] = [None, None, None]  # weights array, its grouped view, settings

        def step(x: np.ndarray) -> np.ndarray | None:
            kernel = self.kernel.data
            if x.ndim != 4 or x.shape[-1] != kernel.shape[2]:
                return None
            if made[0] is not kernel:
                made[1], made[2] = self._grouped(kernel, fused)
                made[0] = kernel if np.may_share_memory(made[1], kernel) else None
            return ops.conv(x, made[1], None if self.bias is None else self.bias.data, **made[2])

        return step

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "kernel_size": list(self.kernel_size),
            "strides": list(self.strides),
            "padding": _padding_config(self.padding),
            "depth_multiplier": self.depth_multiplier,
            "data_format": self.data_format,
            "dilation_rate": list(self.dilation_rate),
            "activation": self.activation,
            "use_bias": self.use_bias,
            "depthwise_initializer": initializers.serialize(self.depthwise_initializer),
            "bias_initializer": initializers.serialize(self.bias_initializer),
            **weight_options_config(
                self, "depthwise_regularizer", "depthwise_constraint", *_BIAS_OPTIONS
            ),
        }


@register_serializable(package="cnnkit")
class SeparableConv2D(DepthwiseConv2D):
    """A depthwise convolution (strides, padding and dilation apply here) followed by a
    1x1 convolution to ``filters`` channels, as Keras: weights ``depthwise_kernel``
    ``(kh, kw, C_in, depth_multiplier)``, ``pointwise_kernel``
    ``(1, 1, C_in * depth_multiplier, filters)`` and ``bias`` ``(filters,)``."""

    pointwise_regularizer: Any
    pointwise_constraint: Any

    def __init__(
        self,
        filters: int,
        kernel_size: int | Sequence[int],
        strides: int | Sequence[int] = 1,
        padding: str | Sequence[Sequence[int]] = "valid",
        data_format: Any = None,
        dilation_rate: int | Sequence[int] = 1,
        depth_multiplier: int = 1,
        activation: Any = None,
        use_bias: bool = True,
        depthwise_initializer: Any = "glorot_uniform",
        pointwise_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        depthwise_regularizer: Any = None,
        pointwise_regularizer: Any = None,
        bias_regularizer: Any = None,
        depthwise_constraint: Any = None,
        pointwise_constraint: Any = None,
        bias_constraint: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            kernel_size,
            strides=strides,
            padding=padding,
            depth_multiplier=depth_multiplier,
            data_format=data_format,
            dilation_rate=dilation_rate,
            activation=activation,
            use_bias=use_bias,
            depthwise_initializer=depthwise_initializer,
            bias_initializer=bias_initializer,
            depthwise_regularizer=depthwise_regularizer,
            bias_regularizer=bias_regularizer,
            depthwise_constraint=depthwise_constraint,
            bias_constraint=bias_constraint,
            **kwargs,
        )
        where = f"{type(self).__name__}({self.name!r})"
        self.filters = _validate.integer(where, "filters", filters, minimum=1)
        self.pointwise_initializer = initializers.get(pointwise_initializer)
        set_weight_options(
            self,
            where,
            pointwise_regularizer=pointwise_regularizer,
            pointwise_constraint=pointwise_constraint,
        )

    def build(self, input_shape: tuple[int, ...]) -> None:
        self._need_rank(input_shape, 4, "(N, H, W, C)")
        c = input_shape[-1]
        self.depthwise_kernel = self._add_depthwise_kernel("depthwise_kernel", c)
        self.pointwise_kernel = self.add_weight(
            "pointwise_kernel",
            (1, 1, c * self.depth_multiplier, self.filters),
            self.pointwise_initializer,
            regularizer=self.pointwise_regularizer,
            constraint=self.pointwise_constraint,
        )
        self.bias = add_bias(self, self.filters)

    def call(self, x: Tensor, training: bool = False) -> Tensor:
        y = self._depthwise(x, self.depthwise_kernel, None)
        y = ag.conv(y, self.pointwise_kernel, self.bias)
        return _apply_activation(self._act, y)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "filters": self.filters,
            "pointwise_initializer": initializers.serialize(self.pointwise_initializer),
            **weight_options_config(self, "pointwise_regularizer", "pointwise_constraint"),
        }
