"""``Model.summary()``: the table of layers, output shapes and parameters, in Keras 3's layout.

Keras 3 draws a boxed table (heavy header, light body, a rule between rows) and
gives every count with its size in memory (``34,826 (136.04 KB)``). The table is
described by :class:`Column` objects (header, share of the width, alignment, the
cell text of a row), so a model type can add a column (the functional API's
"Connected to") without touching the drawing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Callable

__all__ = ["Column", "Row", "default_columns", "print_summary", "readable_size"]


@dataclass
class Row:
    """One layer of the table: the layer and its nesting depth (``expand_nested``)."""

    layer: Any
    depth: int = 0


@dataclass
class Column:
    """A column: its header, its share of the line, and the text of each row."""

    header: str
    share: float
    cell: Callable[[Row], str]
    align: str = "<"  # "<" left, ">" right


def readable_size(num_bytes: float) -> str:
    """``1234`` -> ``"1.21 KB"``, as Keras's ``readable_memory_size`` (powers of 1024)."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if num_bytes / 1024 < 1:
            return f"{num_bytes:.2f} {unit}"
        num_bytes /= 1024
    return f"{num_bytes:.2f} PB"


def _name_cell(row: Row) -> str:
    layer = row.layer
    text = f"{layer.name} ({type(layer).__name__})"
    return ("   " * (row.depth - 1) + " └ " + text) if row.depth else text


def _shape_cell(row: Row) -> str:
    shape = row.layer._output_shape
    return "?" if shape is None else str(shape)


def _params_cell(row: Row) -> str:
    return f"{sum(v.size for v in row.layer.weights):,}"


def _trainable_cell(row: Row) -> str:
    return "Y" if row.layer.trainable else "N"


def default_columns(show_trainable: bool = False) -> list[Column]:
    """Keras's columns: Layer (type), Output Shape, Param # and, with ``show_trainable``,
    Trainable (Y/N)."""
    columns = [
        Column("Layer (type)", 0.40, _name_cell),
        Column("Output Shape", 0.30, _shape_cell),
        Column("Param #", 0.15, _params_cell, ">"),
    ]
    if show_trainable:
        columns.append(Column("Trainable", 0.15, _trainable_cell))
    return columns


def _with_connections(
    columns: list[Column], graph: dict[str, tuple[str, list[str]]]
) -> list[Column]:
    """A functional model's columns: its own layers' output shapes as the graph records them
    (``multiple`` for a shared layer whose calls differ) and Keras's "Connected to" column,
    the ``layer[node][tensor]`` inputs of each call."""

    def top(row: Row) -> bool:
        return row.depth == 0 and row.layer.name in graph

    def shape(row: Row) -> str:
        return graph[row.layer.name][0] if top(row) else _shape_cell(row)

    def links(row: Row) -> str:
        return "\n".join(graph[row.layer.name][1]) if top(row) else ""

    out = [Column(c.header, c.share, shape) if c.cell is _shape_cell else c for c in columns]
    out.insert(3, Column("Connected to", 0.30, links))
    return out


def _rows(model: Any, expand_nested: bool, depth: int = 0) -> list[Row]:
    rows = []
    for layer in model._layers:
        rows.append(Row(layer, depth))
        if expand_nested and getattr(layer, "_layers", None):
            rows.extend(_rows(layer, expand_nested, depth + 1))
    return rows


def _wrap(text: str, width: int) -> list[str]:
    # Long cells (nested names, long shapes) wrap instead of breaking the box; a cell of
    # several lines (the inputs a layer is connected to) keeps one per line.
    return [
        part[i : i + width] for part in text.split("\n") for i in range(0, len(part) or 1, width)
    ]


def _table(columns: Sequence[Column], rows: list[Row], line_length: int) -> list[str]:
    total = sum(c.share for c in columns)
    widths = []
    for c in columns:
        longest = max([len(c.header), *(len(t) for r in rows for t in c.cell(r).split("\n"))])
        # Each cell has one space of padding on each side.
        widths.append(max(int(line_length * c.share / total) - 3, min(longest, 60), 4))

    def line(left: str, fill: str, mid: str, right: str) -> str:
        return left + mid.join(fill * (w + 2) for w in widths) + right

    def cells(texts: list[str], aligns: list[str], bar: str) -> list[str]:
        parts = [_wrap(t, w) for t, w in zip(texts, widths)]
        height = max(len(p) for p in parts)
        out = []
        for i in range(height):
            pieces = [
                f" {(p[i] if i < len(p) else ''):{a}{w}} " for p, a, w in zip(parts, aligns, widths)
            ]
            out.append(bar + bar.join(pieces) + bar)
        return out

    lines = [line("┏", "━", "┳", "┓")]
    lines += cells([c.header for c in columns], [c.align for c in columns], "┃")
    lines.append(line("┡", "━", "╇", "┩"))
    for i, row in enumerate(rows):
        lines += cells([c.cell(row) for c in columns], [c.align for c in columns], "│")
        if i != len(rows) - 1:
            lines.append(line("├", "─", "┼", "┤"))
    lines.append(line("└", "─", "┴", "┘"))
    return lines


def _count(variables: Sequence[Any]) -> tuple[int, int]:
    return sum(v.size for v in variables), sum(v.data.nbytes for v in variables)


def print_summary(
    model: Any,
    line_length: int | None = None,
    print_fn: Callable[[str], Any] | None = None,
    expand_nested: bool = False,
    show_trainable: bool = False,
    columns: Sequence[Column] | None = None,
) -> None:
    """Print the Keras 3 summary of ``model``.

    Moving statistics and frozen weights count as non-trainable; once the
    optimizer is built its slots are listed as "Optimizer params" and included in
    the total, as Keras 3 does. ``columns`` replaces :func:`default_columns`.
    """
    if not model.built:
        raise ValueError(
            f"summary(): model {model.name!r} is not built yet: give the first layer an "
            "input shape (Input or input_shape=) or call the model on data"
        )
    if line_length is None:
        line_length = 88
    emit = print_fn or print
    rows = _rows(model, bool(expand_nested))
    cols = list(columns) if columns is not None else default_columns(bool(show_trainable))
    if columns is None and hasattr(model, "_connections"):
        cols = _with_connections(cols, model._connections())
    emit(f'Model: "{model.name}"')
    for text in _table(cols, rows, int(line_length)):
        emit(text)
    n_all, b_all = _count(model.weights)
    n_train, b_train = _count(model.trainable_weights)
    n_opt, b_opt = 0, 0
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None and getattr(optimizer, "built", False):
        state = optimizer.get_state()
        n_opt = sum(a.size for k, a in state.items() if k != "iterations")
        b_opt = sum(a.nbytes for k, a in state.items() if k != "iterations")
    emit(f" Total params: {n_all + n_opt:,} ({readable_size(b_all + b_opt)})")
    emit(f" Trainable params: {n_train:,} ({readable_size(b_train)})")
    emit(f" Non-trainable params: {n_all - n_train:,} ({readable_size(b_all - b_train)})")
    if n_opt:
        emit(f" Optimizer params: {n_opt:,} ({readable_size(b_opt)})")
