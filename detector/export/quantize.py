"""INT8 post-training quantization of an OpenVINO model with NNCF, calibrated on letterboxed images.

What stays in float (``keep_float``):

- ``none``: NNCF's own choice everywhere (it quantizes the inputs of every convolution, matrix
  product, and of the arithmetic it deems worth it, the decoding included);
- ``decode``: everything after the detector's last layers, the decoding (DFL expectation, distances
  times strides plus the grid, the sigmoid) and an end-to-end model's top-k: boxes in pixels and
  scores in [0, 1] are not rounded to 256 levels;
- ``head``: the decoding and the head's last 1x1 convolutions (the raw box and class outputs).

With a ``max_drop`` (``int8_max_drop``), NNCF's accuracy control goes further: it quantizes as
above, measures mAP50-95 of the float and the INT8 model on a labelled split
(:class:`detector.eval.exported.SplitMetric`, our COCO evaluator's figure), and returns to float the operations that cost
the most, one group at a time, until the INT8 model is within ``max_drop`` of the float one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from detector.data.build import val_dataset
from detector.data.index import SplitIndex
from detector.export.openvino import export_metadata, require, save_ir, set_metadata, to_openvino
from detector.export.signal_stack import kept_signal_stack
from detector.models.detector import Detector

KEEP_FLOAT = ("none", "decode", "head")
PRESETS = ("performance", "mixed")
RANGES = ("histogram", "minmax", "mean_minmax")
SKIPPED_TYPES = {"Parameter", "Constant", "Result"}


def float_nodes(ov_model: Any, keep_float: str) -> list[str]:
    """Names of the operations of ``ov_model`` (the export of :func:`detector.export.openvino.to_openvino`)
    kept in float for ``keep_float``. The detector's own layers are named ``/model/...`` in the graph
    (the exported wrapper holds the detector as ``model``); everything else is the decoding."""
    if keep_float not in KEEP_FLOAT:
        raise ValueError(f"keep_float must be one of {list(KEEP_FLOAT)}, got {keep_float!r}")
    names = []
    for op in ov_model.get_ordered_ops():
        name = op.get_friendly_name()
        if op.get_type_name() in SKIPPED_TYPES or keep_float == "none":
            continue
        if not name.startswith("/model/") or (keep_float == "head" and is_last_head_conv(name)):
            names.append(name)
    return names


def is_last_head_conv(name: str) -> bool:
    """Whether ``name`` is an operation of a head branch's last 1x1 convolution (its ``.2`` module:
    ``/model/head/box.0/box.0.2/Conv/WithoutBiases``, its bias ``.../Conv``)."""
    parts = name.split("/")
    return len(parts) > 4 and parts[2] == "head" and parts[4].endswith(".2") and parts[4].count(".") == 2


def quantize_int8(
    ov_model: Any,
    calibration: Sequence[np.ndarray],
    keep_float: str = "decode",
    preset: str = "performance",
    ranges: str = "histogram",
    control: AccuracyControl | None = None,
) -> Any:
    """``ov_model`` with INT8 weights and activations, its quantization ranges measured on
    ``calibration`` (each ``[1, 3, H, W]`` float32 in [0, 1], letterboxed as for validation), the
    operations of ``keep_float`` left in float. ``preset``: ``performance`` (symmetric weights and
    activations) or ``mixed`` (asymmetric activations: u8 with zero points). ``ranges``: how an
    activation's quantization range comes from the calibration images: ``histogram``, the range that
    minimises the quantization error of the values' histogram; ``minmax``, the smallest and largest
    value over all of them; ``mean_minmax``, the mean over the images of each one's (NNCF's default
    for activations, which clips the rarer extremes). ``control``: NNCF's accuracy control (see the
    module's docstring) instead of plain quantization."""
    nncf = require("nncf", "int8=true")
    if not calibration:
        raise ValueError("no calibration images")
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {list(PRESETS)}, got {preset!r}")
    if ranges not in RANGES:
        raise ValueError(f"ranges must be one of {list(RANGES)}, got {ranges!r}")
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    estimator = {
        "minmax": RangeEstimatorParametersSet.MINMAX,
        "mean_minmax": RangeEstimatorParametersSet.MEAN_MINMAX,
        "histogram": RangeEstimatorParametersSet.HISTOGRAM,
    }[ranges]
    ignored = float_nodes(ov_model, keep_float)
    common: dict[str, Any] = {
        "preset": nncf.QuantizationPreset.MIXED if preset == "mixed" else nncf.QuantizationPreset.PERFORMANCE,
        "subset_size": len(calibration),
        "ignored_scope": nncf.IgnoredScope(names=ignored, validate=False) if ignored else None,
    }
    advanced = nncf.AdvancedQuantizationParameters(activations_range_estimator_params=estimator)
    if control is None:
        return nncf.quantize(ov_model, nncf.Dataset(list(calibration)), advanced_parameters=advanced, **common)
    if control.max_drop < 0:
        raise ValueError(f"max_drop must be >= 0, got {control.max_drop}")
    return nncf.quantize_with_accuracy_control(
        ov_model,
        nncf.Dataset(list(calibration)),
        nncf.Dataset(range(len(control.metric)), control.metric.input),
        control.metric,
        max_drop=control.max_drop,
        drop_type=nncf.DropType.ABSOLUTE,
        advanced_quantization_parameters=advanced,
        **common,
    )


class ValidationMetric(Protocol):
    """What accuracy control measures with (:class:`detector.eval.exported.SplitMetric`): the model's
    input for each of ``len()`` labelled images, and ``metric(compiled, positions) -> (value, raw
    outputs per image)``, higher is better."""

    def __len__(self) -> int: ...

    def input(self, i: int) -> np.ndarray: ...

    def __call__(self, compiled: Any, positions: Iterable[int]) -> tuple[float, list[list[np.ndarray]]]: ...


@dataclass(frozen=True)
class AccuracyControl:
    """Quantization with accuracy control: at most ``max_drop`` mAP50-95 (absolute: 0.01 is one
    point) lost against the float model, as ``metric`` measures it."""

    max_drop: float
    metric: ValidationMetric


@dataclass(frozen=True)
class Int8Settings:
    """How an INT8 export quantizes (``scripts/export.py``'s ``int8_*`` keys; see :func:`quantize_int8`)."""

    keep_float: str = "decode"
    preset: str = "performance"
    ranges: str = "histogram"
    split: str = "train"  # where the calibration images came from, for the metadata
    control: AccuracyControl | None = None
    control_split: str = "val"  # where control's images came from, for the metadata


@kept_signal_stack()  # NNCF and the scoring below compile on OpenVINO's CPU plugin: see signal_stack.py
def export_int8(
    model: Detector,
    path: Path,
    imgsz: int,
    names: list[str],
    calibration: Sequence[np.ndarray],
    dynamic: bool = False,
    max_det: int = 300,
    settings: Int8Settings = Int8Settings(),
) -> Path:
    """The fused model as an INT8 OpenVINO IR at ``path``, calibrated on ``calibration``
    (:func:`calibration_sample`), its settings in the metadata beside the float export's."""
    ov_model = to_openvino(model, imgsz, names, dynamic, max_det)
    control = settings.control
    quantized = quantize_int8(ov_model, calibration, settings.keep_float, settings.preset, settings.ranges, control)
    metadata: dict[str, Any] = export_metadata(ov_model, names, imgsz, max_det, "int8")
    metadata.update(
        int8_images=len(calibration),
        int8_split=settings.split,
        int8_float=settings.keep_float,
        int8_preset=settings.preset,
        int8_ranges=settings.ranges,
    )
    if control is not None:
        # NNCF measured both models while it searched but returns neither figure: score them again
        # (two passes over control's images) so the metadata holds our evaluator's mAP of exactly
        # the float graph and the IR written, compiled in float32 as evaluate.py compiles them.
        scores = {name: split_map(m, control.metric) for name, m in (("float", ov_model), ("int8", quantized))}
        metadata.update(
            int8_max_drop=control.max_drop,
            int8_val_split=settings.control_split,
            int8_val_images=len(control.metric),
            int8_val_map_float=round(scores["float"], 6),
            int8_val_map_int8=round(scores["int8"], 6),
        )
    set_metadata(quantized, metadata)
    return save_ir(quantized, path)


def split_map(ov_model: Any, metric: ValidationMetric) -> float:
    """mAP50-95 of ``ov_model`` on ``metric``'s split, compiled as NNCF and our evaluator compile it
    (float parts in float32, not the bf16 a CPU with AMX would otherwise choose)."""
    import openvino as ov

    compiled = ov.Core().compile_model(ov_model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    return metric(compiled, range(len(metric)))[0]


def calibration_sample(index: SplitIndex, imgsz: int, count: int, seed: int) -> list[np.ndarray]:
    """``count`` images of ``index`` (a sample seeded by ``seed``, or all when fewer), letterboxed to
    ``imgsz`` as for validation: each ``[1, 3, imgsz, imgsz]`` float32 in [0, 1]."""
    dataset = val_dataset(index, imgsz)
    count = min(count, len(dataset))
    chosen = np.sort(np.random.default_rng(seed).choice(len(dataset), count, replace=False))
    return [dataset[int(i)].image.numpy()[None].astype(np.float32) / 255.0 for i in chosen]
