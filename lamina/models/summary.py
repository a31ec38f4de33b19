"""``model.summary()``: Keras 3's table of layers, output shapes and parameter counts.

Draws the same box table Keras prints (column widths computed as Keras's rich
table does, so the text matches character for character) without depending on
rich. Knows nothing about training.
"""

from __future__ import annotations

import shutil
import sys
import textwrap

__all__ = ["print_summary", "readable_memory_size"]


def readable_memory_size(size: float) -> str:
    """Bytes as Keras writes them: ``620.00 B``, ``37.54 KB`` (powers of 1024).

    >>> readable_memory_size(38440)
    '37.54 KB'
    """
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if size / 1024 < 1:
            return f"{size:.2f} {unit}"
        size /= 1024
    return f"{size:.2f} PB"


def _count(tensors) -> tuple[int, int]:
    count = sum(int(t.numel()) for t in tensors)
    size = sum(int(t.numel()) * t.element_size() for t in tensors)
    return count, size


def _reduce_evenly(excess: int, widths: list[int]) -> list[int]:
    # Shrink columns evenly, rounding as Python's round() (banker's) like rich does.
    remaining, ratio_left, out = excess, len(widths), []
    for width in widths:
        cut = min(width, round(remaining / ratio_left))
        out.append(width - cut)
        remaining -= cut
        ratio_left -= 1
    return out


def _column_widths(line_length: int, positions: list[float]) -> list[int]:
    widths, current = [], 0
    for pos in positions:
        width = int(pos * line_length) - current
        if width < 4:
            raise ValueError("Insufficient console width to print summary.")
        widths.append(width)
        current += width
    padded = [w + 2 for w in widths]
    available = line_length - (len(widths) + 1)
    if sum(padded) > available:
        padded = _reduce_evenly(sum(padded) - available, padded)
    return [w - 2 for w in padded]


def _cell_lines(text: str, width: int) -> list[str]:
    # As rich's default overflow="ellipsis": wrap at spaces, and cut a word longer than the
    # column to width - 1 characters plus "…" instead of folding it.
    lines = textwrap.wrap(text, width, break_long_words=False, break_on_hyphens=False) or [""]
    return [line if len(line) <= width else line[:width - 1] + "…" for line in lines]


def _render_row(cells: list[str], widths: list[int], align: list[str], edge: str = "│") -> list[str]:
    wrapped = [_cell_lines(c, w) for c, w in zip(cells, widths)]
    height = max(len(w) for w in wrapped)
    if edge == "┃":  # rich aligns header cells to the bottom of the header row
        wrapped = [[""] * (height - len(w)) + w for w in wrapped]
    lines = []
    for i in range(height):
        parts = []
        for lines_, width, how in zip(wrapped, widths, align):
            text = lines_[i] if i < len(lines_) else ""
            parts.append(" " + (text.rjust(width) if how == "right" else text.center(width) if how == "center"
                                else text.ljust(width)) + " ")
        lines.append(edge + edge.join(parts) + edge)
    return lines


def _shape_text(layer) -> str:
    shape = getattr(layer, "_output_shape", None)
    if shape is None and layer.built and getattr(layer, "_build_shape", None) is not None:
        # A layer built by an eager call (subclassed models): Keras shows the output
        # shape for the shape it was built with.
        try:
            shape = layer.compute_output_shape(layer._build_shape)
        except (NotImplementedError, ValueError, TypeError, RuntimeError):
            shape = None
    if shape is None:
        return "?"
    if isinstance(shape, list):
        return "[" + ", ".join(_fmt_shape(s) for s in shape) + "]"
    return _fmt_shape(shape)


def _fmt_shape(shape) -> str:
    return "(" + ", ".join("None" if s is None else str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def _params_text(layer) -> str:
    if not layer.built:
        return "0 (unbuilt)"
    return f"{layer.count_params():,}"


def _layer_rows(layer, show_trainable, expand_nested, connections, level=0):
    prefix = ("   " * level + "└ ") if level else ""
    row = [f"{prefix}{layer.name} ({type(layer).__name__})", _shape_text(layer), _params_text(layer)]
    if connections is not None:
        row.append(connections(layer))
    if show_trainable:
        row.append(("Y" if layer.trainable else "N") if layer.weights else "-")
    rows = [row]
    if expand_nested and hasattr(layer, "layers") and layer is not None:
        for sub in getattr(layer, "layers", []):
            rows.extend(_layer_rows(sub, show_trainable, expand_nested, connections, level + 1))
    return rows


def _layer_range(layers, layer_range):
    if layer_range is None:
        return layers
    if len(layer_range) != 2:
        raise ValueError(f"layer_range must be a list of two layer names; received {layer_range!r}.")
    names = [l.name for l in layers]
    try:
        start, end = names.index(layer_range[0]), names.index(layer_range[1])
    except ValueError:
        raise ValueError(f"layer_range names must be among the model's layers {names}; received {layer_range!r}.") from None
    return layers[start:end + 1]


def print_summary(model, line_length=None, positions=None, print_fn=None, expand_nested=False,
                  show_trainable=False, layer_range=None) -> None:
    """Print (or pass to ``print_fn``) the summary of ``model``."""
    connections = getattr(model, "_summary_connections", None)
    if connections is not None and model._summary_sequential_like():
        connections = None
    if connections is None:
        default_length, positions = 88, positions or [0.45, 0.80, 1.0]
        header, align = ["Layer (type)", "Output Shape", "Param #"], ["left", "left", "right"]
    else:
        default_length, positions = 108, positions or [0.3, 0.56, 0.74, 1.0]
        header = ["Layer (type)", "Output Shape", "Param #", "Connected to"]
        align = ["left", "left", "right", "left"]
    if show_trainable:
        default_length += 12
        positions = [p * 0.90 for p in positions] + [1.0]
        header, align = header + ["Trainable"], align + ["center"]
    if line_length is None:
        line_length = min(default_length, shutil.get_terminal_size().columns - 4)
    widths = _column_widths(line_length, positions)
    bar = lambda l, m, r, c: l + m.join(c * (w + 2) for w in widths) + r  # noqa: E731
    lines = [f'Model: "{model.name}"', bar("┏", "┳", "┓", "━")]
    lines += _render_row(header, widths, align, "┃")
    lines.append(bar("┡", "╇", "┩", "━"))
    rows = []
    layers = _layer_range(list(getattr(model, "_summary_layers", lambda: model.layers)()), layer_range)
    for layer in layers:
        rows.extend(_layer_rows(layer, show_trainable, expand_nested, connections))
    for i, row in enumerate(rows):
        if i:
            lines.append(bar("├", "┼", "┤", "─"))
        lines += _render_row(row, widths, align)
    lines.append(bar("└", "┴", "┘", "─"))
    trainable, trainable_size = _count(model.trainable_weights)
    frozen, frozen_size = _count(model.non_trainable_weights)
    optimizer = getattr(model, "optimizer", None)
    opt_count = opt_size = 0
    if optimizer is not None and getattr(optimizer, "built", False):
        opt_count, opt_size = _count(optimizer.variables)
    total, total_size = trainable + frozen + opt_count, trainable_size + frozen_size + opt_size
    lines.append(f" Total params: {total:,} ({readable_memory_size(total_size)})")
    lines.append(f" Trainable params: {trainable:,} ({readable_memory_size(trainable_size)})")
    lines.append(f" Non-trainable params: {frozen:,} ({readable_memory_size(frozen_size)})")
    if optimizer is not None and getattr(optimizer, "built", False):
        lines.append(f" Optimizer params: {opt_count:,} ({readable_memory_size(opt_size)})")
    text = "\n".join(lines) + "\n"
    if print_fn is None:
        sys.stdout.write(text)
    else:
        print_fn(text)
