"""``Model.summary()``: the Keras-style table of layers, output shapes and parameters."""

from __future__ import annotations

from typing import Any, Callable

__all__ = ["print_summary"]


def print_summary(
    model: Any, line_length: int = 80, print_fn: Callable[[str], Any] | None = None
) -> None:
    """Print ``Layer (type) | Output Shape | Param #`` rows and the parameter totals of
    ``model``; moving statistics and frozen weights count as non-trainable."""
    if not model.built:
        raise ValueError(
            f"summary(): model {model.name!r} is not built yet: give the first layer an "
            "input shape (Input or input_shape=) or call the model on data"
        )
    emit = print_fn or print
    # A functional model adds Keras's "Connected to" column: the layer[node][tensor] inputs.
    graph = model._connections() if hasattr(model, "_connections") else None
    longest = max((len(f" {x.name} ({type(x).__name__})") for x in model._layers), default=0)
    widths = (max(int(line_length * 0.45), longest + 2), int(line_length * 0.33))
    if graph is not None:
        widths = (widths[0], max(widths[1], 2 + max(len(s) for s, _ in graph.values())))
    line_length = max(line_length, widths[0] + widths[1] + 10)
    if graph is not None:
        longest_link = max((len(x) for _, links in graph.values() for x in links), default=0)
        line_length = max(line_length, widths[0] + widths[1] + 10 + max(longest_link, 12))
    rule, double = "_" * line_length, "=" * line_length

    def row(a: str, b: str, c: str, d: str = "") -> str:
        text = f"{a:<{widths[0]}}{b:<{widths[1]}}{c}"
        return f"{text:<{widths[0] + widths[1] + 10}}{d}".rstrip() if graph is not None else text

    emit(f'Model: "{model.name}"')
    emit(rule)
    emit(row(" Layer (type)", "Output Shape", "Param #", "Connected to"))
    emit(double)
    for i, layer in enumerate(model._layers):
        shape = layer._output_shape
        text = "?" if shape is None else str(shape)
        links = [""]
        if graph is not None:
            text, links = graph[layer.name][0], graph[layer.name][1] or [""]
        params = sum(v.size for v in layer.weights)
        emit(row(f" {layer.name} ({type(layer).__name__})", text, f"{params:,}", links[0]))
        for link in links[1:]:
            emit(row("", "", "", link))
        if i != len(model._layers) - 1:
            emit("")
    emit(double)
    total = sum(v.size for v in model.weights)
    trainable = sum(v.size for v in model.trainable_weights)
    emit(f"Total params: {total:,}")
    emit(f"Trainable params: {trainable:,}")
    emit(f"Non-trainable params: {total - trainable:,}")
    emit(rule)
