# Type stubs for the pybind11 extension cnnkit._core (src/module.cpp and src/bind_*.cpp).
# The bindings take positional arguments only; cnnkit.ops wraps each with names, defaults,
# documentation and the NumPy-style signature users call. Array arguments accept anything
# np.asarray accepts; results are new NumPy arrays.
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

__version__: str
compiler: str
openmp_version: int

_Spatial = Any  # int, tuple of ints, "valid"/"same", or per-dimension (before, after) pairs

def get_num_threads() -> int: ...
def set_num_threads(n: int, /) -> None: ...
def available_isas() -> list[str]: ...
def get_isa() -> str: ...
def set_isa(isa: str, /) -> None: ...

# boxes
def box_area(boxes: ArrayLike, /) -> NDArray[np.floating[Any]]: ...
def box_convert(boxes: ArrayLike, in_fmt: str, out_fmt: str, /) -> NDArray[np.floating[Any]]: ...
def box_iou(
    boxes1: ArrayLike, boxes2: ArrayLike, aligned: bool, /
) -> NDArray[np.floating[Any]]: ...
def generalized_box_iou(
    boxes1: ArrayLike, boxes2: ArrayLike, aligned: bool, /
) -> NDArray[np.floating[Any]]: ...
def distance_box_iou(
    boxes1: ArrayLike, boxes2: ArrayLike, aligned: bool, /
) -> NDArray[np.floating[Any]]: ...
def complete_box_iou(
    boxes1: ArrayLike, boxes2: ArrayLike, aligned: bool, /
) -> NDArray[np.floating[Any]]: ...
def clip_boxes(boxes: ArrayLike, height: Any, width: Any, /) -> NDArray[np.floating[Any]]: ...
def remove_small_boxes(boxes: ArrayLike, min_size: float, /) -> NDArray[np.int64]: ...
def nms(
    boxes: ArrayLike,
    scores: ArrayLike,
    iou_threshold: float,
    score_threshold: float | None,
    max_output: int | None,
    /,
) -> NDArray[np.int64]: ...
def batched_nms(
    boxes: ArrayLike,
    scores: ArrayLike,
    classes: ArrayLike,
    iou_threshold: float,
    score_threshold: float | None,
    max_output: int | None,
    /,
) -> NDArray[np.int64]: ...
def soft_nms(
    boxes: ArrayLike,
    scores: ArrayLike,
    method: str,
    sigma: float,
    iou_threshold: float,
    score_threshold: float,
    /,
) -> tuple[NDArray[np.int64], NDArray[np.floating[Any]]]: ...

# GEMM, convolution, pooling, Gram matrices
def matmul(
    a: ArrayLike,
    b: ArrayLike,
    bias: ArrayLike | None = None,
    activation: str | None = None,
    negative_slope: float = 0.2,
) -> NDArray[np.floating[Any]]: ...
def activation_backward(
    y: ArrayLike, dy: ArrayLike, activation: str | None, negative_slope: float, /
) -> NDArray[np.floating[Any]]: ...
def conv(
    x: ArrayLike,
    w: ArrayLike,
    b: ArrayLike | None,
    stride: Any,
    padding: _Spatial,
    dilation: Any,
    groups: int,
    activation: str | None = None,
    negative_slope: float = 0.2,
    winograd: bool | None = None,
    residual: ArrayLike | None = None,
    out: NDArray[np.floating[Any]] | None = None,
) -> NDArray[np.floating[Any]]: ...
def conv_backward(
    x: ArrayLike,
    w: ArrayLike,
    dy: ArrayLike,
    stride: Any,
    padding: _Spatial,
    dilation: Any,
    groups: int,
    need_x: bool,
    need_w: bool,
    need_b: bool,
    y: ArrayLike | None = None,
    activation: str | None = None,
    negative_slope: float = 0.2,
    winograd: bool | None = None,
) -> tuple[
    NDArray[np.floating[Any]] | None,
    NDArray[np.floating[Any]] | None,
    NDArray[np.floating[Any]] | None,
]: ...
def conv_max_pool_backward(
    x: ArrayLike,
    w: ArrayLike,
    dy: ArrayLike,
    indices: ArrayLike,
    pool_size: Any,
    stride: Any,
    padding: _Spatial,
    dilation: Any,
    groups: int,
    pool_stride: Any,
    pool_padding: _Spatial,
    relu_output: ArrayLike | None = None,
) -> tuple[NDArray[np.floating[Any]], NDArray[np.floating[Any]]]: ...
def conv_stem(
    x: ArrayLike,
    w: ArrayLike,
    b: ArrayLike | None,
    stride: Any,
    padding: _Spatial,
    activation: str | None,
    negative_slope: float,
    channels_first: bool,
    pool_size: Any,
    pool_stride: Any,
    pool_padding: _Spatial | None,
) -> NDArray[np.floating[Any]]: ...
def max_pool(
    x: ArrayLike, pool_size: Any, stride: Any, padding: _Spatial, /
) -> NDArray[np.floating[Any]]: ...
def avg_pool(
    x: ArrayLike, pool_size: Any, stride: Any, padding: _Spatial, /
) -> NDArray[np.floating[Any]]: ...
def max_pool_backward(
    x: ArrayLike, dy: ArrayLike, pool_size: Any, stride: Any, padding: _Spatial, /
) -> NDArray[np.floating[Any]]: ...
def max_pool_with_indices(
    x: ArrayLike, pool_size: Any, stride: Any, padding: _Spatial, /
) -> tuple[NDArray[np.floating[Any]], NDArray[np.int64]]: ...
def max_pool_backward_indices(
    x: ArrayLike,
    dy: ArrayLike,
    indices: ArrayLike,
    pool_size: Any,
    stride: Any,
    padding: _Spatial,
    /,
    relu_output: ArrayLike | None = None,
) -> NDArray[np.floating[Any]]: ...
def get_winograd() -> bool: ...
def set_winograd(on: bool, /) -> None: ...
def _winograd_cache_stats() -> dict[str, int]: ...
def _clear_winograd_cache() -> None: ...
def _conv_weight_cache_stats() -> dict[str, int]: ...
def _clear_conv_weight_cache() -> None: ...
def avg_pool_backward(
    x: ArrayLike, dy: ArrayLike, pool_size: Any, stride: Any, padding: _Spatial, /
) -> NDArray[np.floating[Any]]: ...
def global_max_pool(x: ArrayLike, /) -> NDArray[np.floating[Any]]: ...
def global_avg_pool(x: ArrayLike, /) -> NDArray[np.floating[Any]]: ...
def gram(x: ArrayLike, normalize: Any, /) -> NDArray[np.floating[Any]]: ...
def gram_backward(x: ArrayLike, dG: ArrayLike, normalize: Any, /) -> NDArray[np.floating[Any]]: ...

# anchors, windows, YOLO
def kmeans_anchors(
    wh: ArrayLike, k: int, iterations: int, iou_threshold: float, rng: np.random.Generator, /
) -> tuple[NDArray[np.floating[Any]], float, float, int]: ...
def sliding_windows(images: ArrayLike, window: Any, stride: Any, /) -> NDArray[Any]: ...
def yolo_decode(
    Y: ArrayLike, anchors: ArrayLike, image_size: Any, score_threshold: float | None, /
) -> Any: ...
def yolo_encode(
    boxes: Any,
    classes: Any,
    grid: Any,
    anchors: ArrayLike,
    num_classes: int,
    image_size: Any,
    batched: bool,
    /,
) -> Any: ...
def roi_align(
    x: ArrayLike,
    rois: ArrayLike,
    output_size: Any,
    spatial_scale: float,
    sampling_ratio: int,
    aligned: bool,
    /,
) -> NDArray[np.floating[Any]]: ...
def roi_align_backward(
    x: ArrayLike,
    rois: ArrayLike,
    dy: ArrayLike,
    output_size: Any,
    spatial_scale: float,
    sampling_ratio: int,
    aligned: bool,
    /,
) -> NDArray[np.floating[Any]]: ...
def roi_pool(
    x: ArrayLike,
    rois: ArrayLike,
    output_size: Any,
    spatial_scale: float,
    sampling_ratio: int,
    aligned: bool,
    /,
) -> NDArray[np.floating[Any]]: ...
def roi_pool_backward(
    x: ArrayLike,
    rois: ArrayLike,
    dy: ArrayLike,
    output_size: Any,
    spatial_scale: float,
    sampling_ratio: int,
    aligned: bool,
    /,
) -> NDArray[np.floating[Any]]: ...
def masks_to_boxes(masks: ArrayLike, /) -> NDArray[np.floating[Any]]: ...
def felzenszwalb(
    image: ArrayLike, scale: float, sigma: float, min_size: int, /
) -> NDArray[np.int64]: ...
def group_regions(
    labels: ArrayLike,
    colour: ArrayLike,
    texture: ArrayLike,
    use_colour: bool,
    use_texture: bool,
    use_size: bool,
    use_fill: bool,
    /,
) -> NDArray[np.float32]: ...
def group_regions_many(
    labels: ArrayLike,
    colour: ArrayLike,
    texture: ArrayLike,
    strategies: list[str] | tuple[str, ...],
    /,
) -> list[NDArray[np.float32]]: ...
def hsv_image(image: ArrayLike, /) -> NDArray[np.float64]: ...
def texture_bins(image: ArrayLike, /) -> NDArray[np.uint8]: ...
def lrn(
    x: ArrayLike, size: Any, alpha: Any, beta: Any, bias: Any, /
) -> NDArray[np.floating[Any]]: ...
def lrn_backward(
    x: ArrayLike, dy: ArrayLike, size: Any, alpha: Any, beta: Any, bias: Any, /
) -> NDArray[np.floating[Any]]: ...
def sgd_update(
    var: NDArray[np.floating[Any]],
    grad: ArrayLike,
    velocity: NDArray[np.floating[Any]] | None,
    learning_rate: Any,
    momentum: Any,
    nesterov: bool,
) -> None: ...
def adam_update(
    var: NDArray[np.floating[Any]],
    grad: ArrayLike,
    m: NDArray[np.floating[Any]],
    v: NDArray[np.floating[Any]],
    v_hat: NDArray[np.floating[Any]] | None,
    step_size: Any,
    beta_1: Any,
    beta_2: Any,
    epsilon: Any,
) -> None: ...
def batch_norm(
    x: ArrayLike, gamma: ArrayLike, beta: ArrayLike, epsilon: Any, /
) -> tuple[NDArray[np.floating[Any]], NDArray[np.floating[Any]], NDArray[np.floating[Any]]]: ...
def batch_norm_backward(
    x: ArrayLike, dy: ArrayLike, gamma: ArrayLike, mean: ArrayLike, var: ArrayLike, epsilon: Any, /
) -> tuple[NDArray[np.floating[Any]], NDArray[np.floating[Any]], NDArray[np.floating[Any]]]: ...
def batch_norm_inference(
    x: ArrayLike,
    gamma: ArrayLike,
    beta: ArrayLike,
    mean: ArrayLike,
    var: ArrayLike,
    epsilon: Any,
    /,
) -> NDArray[np.floating[Any]]: ...
def add_relu(a: ArrayLike, b: ArrayLike, /) -> NDArray[np.floating[Any]]: ...
def concat(tensors: Sequence[ArrayLike], axis: int, /) -> NDArray[np.floating[Any]]: ...
def channels_last(x: ArrayLike) -> NDArray[np.floating[Any]]: ...
def _set_memory_handler(handler: object | None, /) -> object: ...
def _block_cache_budget(bytes: int, /) -> None: ...
def _block_cache_trim() -> None: ...
def _block_cache_stats() -> dict[str, int]: ...
