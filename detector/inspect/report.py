"""The conv records as terminal tables (rich) and as CSV, JSON or Markdown text carrying every field."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rich import box
from rich.cells import cell_len
from rich.table import Table
from rich.text import Text

from detector.inspect.layers import ConvLayer, LayerReport, totals
from detector.inspect.stats import WeightChange

FORMATS = {"csv": ".csv", "json": ".json", "markdown": ".md"}


def dims(values: Sequence[Any] | str | None) -> str:
    """``(3, 640, 640)`` -> ``3x640x640``; a padding string as it is; None -> ``-``."""
    if values is None:
        return "-"
    if isinstance(values, str):
        return values
    return "x".join(number(v) for v in values)


def number(value: float | None) -> str:
    """Integers without decimals, others with up to 4 significant digits, ``inf`` as global."""
    if value is None:
        return "-"
    if isinstance(value, float) and math.isinf(value):
        return "global"
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.4g}"


def human(n: float | None) -> str:
    """``44236800`` -> ``44.2M``."""
    if n is None:
        return "-"
    for unit, size in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.3g}{unit}"
    return str(int(n))


def same_or_dims(values: Sequence[float] | None) -> str:
    """One number when every dimension agrees (``3`` for 3x3), else all of them."""
    if values is None:
        return "-"
    return number(values[0]) if len(set(values)) == 1 else dims(values)


def geometry(layer: ConvLayer) -> str:
    """``3x3 s2 p1`` plus ``d2`` / ``g16`` / ``op1`` when not the default."""
    padding = layer.padding if isinstance(layer.padding, str) else same_or_dims(layer.padding)
    text = f"{dims(layer.kernel)} s{same_or_dims(layer.stride)} p{padding}"
    if any(d != 1 for d in layer.dilation):
        text += f" d{same_or_dims(layer.dilation)}"
    if layer.groups > 1:
        text += f" g{layer.groups}"
    if any(layer.output_padding):
        text += f" op{same_or_dims(layer.output_padding)}"
    return text


def check(layer: ConvLayer) -> str:
    if layer.shape_ok is None:
        return "[dim]not run[/dim]"
    return "ok" if layer.shape_ok else f"[bold red]MISMATCH: formula {dims(layer.expected_size)}[/bold red]"


@dataclass
class _Column:
    """One column of a terminal table; columns with a lower ``keep`` are left out first when the console is narrow."""

    header: str
    cells: list[str]
    keep: int = 9  # 9: always shown
    justify: str = "right"
    fold: bool = False  # long cells wrap (module paths); others stay on one line

    def width(self, folded: bool) -> int:
        natural = max([cell_len(self.header), *(Text.from_markup(c).cell_len for c in self.cells)])
        return min(natural, 18) if self.fold and folded else natural


def fitted_table(
    title: str, caption: str, columns: list[_Column], width: int, footer: list[str] | None = None
) -> Table:
    """A table of ``columns`` that fits ``width`` console cells: the least important columns are dropped
    until it does, first keeping module paths on one line (down to ``keep`` 3), then letting them
    wrap. ``footer`` is a last row after a rule (totals)."""
    shown = list(range(len(columns)))

    def too_wide(folded: bool) -> bool:
        return sum(columns[i].width(folded) for i in shown) + 2 * len(shown) > width  # two cells between columns

    for folded, limit in ((False, 3), (True, 8)):
        while too_wide(folded):
            candidates = [i for i in shown if columns[i].keep <= limit]
            if not candidates:
                break
            shown.remove(min(candidates, key=lambda i: (columns[i].keep, -i)))
    table = Table(
        title=title,
        caption=caption,
        title_justify="left",
        caption_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
        header_style="bold",
        min_width=min(max(cell_len(title), cell_len(caption)), width),  # title and caption on one line where they fit
    )
    for i in shown:
        c = columns[i]
        table.add_column(c.header, justify=c.justify, overflow="fold", no_wrap=not c.fold and c.header != "check")
    for r in range(len(columns[0].cells)):
        table.add_row(*(columns[i].cells[r] for i in shown))
    if footer is not None:
        table.add_section()
        table.add_row(*(footer[i] for i in shown))
    return table


def layers_table(report: LayerReport, layers: Sequence[ConvLayer], width: int = 200) -> Table:
    """Geometry, cost, shapes, receptive field: one row per conv and a totals row, fitted to ``width``."""
    t = totals(layers)
    input_shape = dims(report.input_shape)
    caption = (
        f"{t['convs']} convolution{'s' if t['convs'] != 1 else ''}, "
        f"{t['params']:,} of the model's {report.params:,} parameters, "
        f"{t['macs']:,} MACs ({t['gflops']:.2f} GFLOPs) at {input_shape}; "
        f"{t['shape_mismatches']} output size{'s' if t['shape_mismatches'] != 1 else ''} disagree with the formula"
    )
    columns = [
        _Column("#", [str(x.index) for x in layers], keep=2),
        _Column("layer", [x.path for x in layers], justify="left", fold=True),
        _Column("kind", [x.kind for x in layers], justify="left"),
        _Column("in->out", [f"{x.in_channels}->{x.out_channels}" for x in layers]),
        _Column("conv", [geometry(x) for x in layers], justify="left"),
        _Column("bias", ["yes" if x.bias else "-" for x in layers], keep=3, justify="left"),
        _Column("params", [human(x.params) for x in layers], keep=4),
        _Column("MACs", [human(x.macs) for x in layers]),
        _Column("input", [dims(x.input_shape) for x in layers], keep=1),
        _Column("output", [dims(x.output_shape) for x in layers]),
        _Column("RF", [same_or_dims(x.receptive_field) for x in layers]),
        _Column("jump", [same_or_dims(x.jump) for x in layers], keep=5),
        _Column("BN", [x.norm if x.norm != "none" else "-" for x in layers], keep=6, justify="left"),
        _Column("check", [check(x) for x in layers], justify="left"),
    ]
    footer = ["", "total", "", "", "", "", human(t["params"]), human(t["macs"]), "", "", "", "", "", ""]
    return fitted_table(f"convolutions at input {input_shape}", caption, columns, width, footer)


def weights_table(
    layers: Sequence[ConvLayer], changes: dict[str, WeightChange] | None = None, width: int = 200
) -> Table:
    """Weight statistics per conv (and the relative change against another model when given), fitted to ``width``."""
    t = totals(layers)
    caption = (
        f"near zero: |w| <= tol; dead: every weight of the filter near zero; prunable: dead filters and "
        f"filters whose BatchNorm gamma is near zero ({t['prunable']} of {t['filters']} filters)"
    )
    ws = [x.weights for x in layers]
    columns = [
        _Column("#", [str(x.index) for x in layers], keep=2),
        _Column("layer", [x.path for x in layers], justify="left", fold=True),
        _Column("mean", [f"{w.mean:+.3g}" for w in ws], keep=3),
        _Column("std", [f"{w.std:.3g}" for w in ws], keep=4),
        _Column(
            "filter L2 min/med/max",
            [f"{w.filter_norm_min:.3g}/{w.filter_norm_median:.3g}/{w.filter_norm_max:.3g}" for w in ws],
        ),
        _Column("near 0", [f"{w.near_zero:.1%}" for w in ws]),
        _Column("dead", [str(w.dead_filters) if w.dead_filters else "-" for w in ws]),
        _Column("gamma~0", ["-" if w.gamma_near_zero is None else f"{w.gamma_near_zero:.1%}" for w in ws], keep=5),
        _Column(
            "prunable",
            [f"[yellow]{w.prunable}/{x.out_channels}[/yellow]" if w.prunable else "-" for x, w in zip(layers, ws)],
        ),
    ]
    if changes is not None:
        columns.append(_Column("rel. change", [change_text(changes.get(x.path)) for x in layers]))
    return fitted_table("weights", caption, columns, width)


def change_text(change: WeightChange | None) -> str:
    if change is None:
        return "-"
    if change.relative_change is None:
        return f"[red]{change.note}[/red]"
    return f"{change.relative_change:.2%}"


def layer_row(layer: ConvLayer, change: WeightChange | None = None, with_change: bool = False) -> dict[str, Any]:
    """Every field of a record, flat and JSON-ready (tuples as lists; a global receptive field as null)."""

    def seq(values: Sequence[Any] | None) -> list[Any] | None:
        return None if values is None else [None if isinstance(v, float) and math.isinf(v) else v for v in values]

    w = layer.weights
    row: dict[str, Any] = {
        "index": layer.index,
        "path": layer.path,
        "type": layer.type,
        "kind": layer.kind,
        "in_channels": layer.in_channels,
        "out_channels": layer.out_channels,
        "kernel": list(layer.kernel),
        "stride": list(layer.stride),
        "padding": layer.padding if isinstance(layer.padding, str) else list(layer.padding),
        "dilation": list(layer.dilation),
        "output_padding": list(layer.output_padding),
        "groups": layer.groups,
        "bias": layer.bias,
        "params": layer.params,
        "macs": layer.macs,
        "input_shape": seq(layer.input_shape),
        "output_shape": seq(layer.output_shape),
        "expected_size": seq(layer.expected_size),
        "shape_ok": layer.shape_ok,
        "receptive_field": seq(layer.receptive_field),
        "receptive_field_global": bool(layer.receptive_field) and any(math.isinf(v) for v in layer.receptive_field),
        "jump": seq(layer.jump),
        "norm": layer.norm,
        "norm_path": layer.norm_path,
        "calls": layer.calls,
        "weight_mean": w.mean,
        "weight_std": w.std,
        "filter_norm_min": w.filter_norm_min,
        "filter_norm_median": w.filter_norm_median,
        "filter_norm_max": w.filter_norm_max,
        "near_zero": w.near_zero,
        "dead_filters": w.dead_filters,
        "gamma_near_zero": w.gamma_near_zero,
        "prunable": w.prunable,
    }
    if with_change:
        row["relative_change"] = change.relative_change if change else None
        row["other_shape"] = seq(change.other_shape) if change else None
        row["change_note"] = change.note if change else ""
    return row


def _flat(value: Any) -> str:
    """A cell of CSV or Markdown: lists joined with x, None empty."""
    if value is None:
        return ""
    if isinstance(value, list):
        return "x".join("inf" if v is None else str(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def render(
    fmt: str, report: LayerReport, layers: Sequence[ConvLayer], changes: Sequence[WeightChange] | None = None
) -> str:
    """The records as ``csv``, ``json`` or ``markdown`` text, every field of every layer, with totals."""
    by_path = {c.path: c for c in changes} if changes is not None else {}
    rows = [layer_row(layer, by_path.get(layer.path), changes is not None) for layer in layers]
    t = totals(layers)
    only_other = [c.path for c in changes or () if c.shape is None]
    if fmt == "json":
        document = {"input_shape": list(report.input_shape), "model_params": report.params, "totals": t, "layers": rows}
        if changes is not None:
            document["only_in_other"] = only_other
        return json.dumps(document, indent=2) + "\n"
    header = list(rows[0]) if rows else list(layer_row(report.layers[0], None, changes is not None))
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(header)
        writer.writerows([_flat(row[k]) for k in header] for row in rows)
        return buffer.getvalue()
    if fmt == "markdown":
        summary = (
            f"Convolutions at input {dims(report.input_shape)}: {t['convs']}, {t['params']:,} parameters "
            f"(model: {report.params:,}), {t['macs']:,} MACs ({t['gflops']:.3f} GFLOPs), "
            f"{t['shape_mismatches']} output sizes disagree with the formula."
        )
        lines = [summary, "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(_flat(row[k]) for k in header) + " |" for row in rows]
        if only_other:
            lines += ["", f"Only in the other model: {', '.join(only_other)}"]
        return "\n".join(lines) + "\n"
    raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
