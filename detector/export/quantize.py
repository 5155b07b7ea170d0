"""INT8 post-training quantization of an OpenVINO model with NNCF, calibrated on letterboxed images.

What stays in float (``keep_float``):

- ``none``: NNCF's own choice everywhere (it quantizes the inputs of every convolution, matrix
  product, and of the arithmetic it deems worth it, the decoding included);
- ``decode``: everything after the detector's last layers, the decoding (DFL expectation, distances
  times strides plus the grid, the sigmoid) and an end-to-end model's top-k: boxes in pixels and
  scores in [0, 1] are not rounded to 256 levels;
- ``head``: the decoding and the head's last 1x1 convolutions (the raw box and class outputs).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from detector.export.openvino import require

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
) -> Any:
    """``ov_model`` with INT8 weights and activations, its quantization ranges measured on
    ``calibration`` (each ``[1, 3, H, W]`` float32 in [0, 1], letterboxed as for validation), the
    operations of ``keep_float`` left in float. ``preset``: ``performance`` (symmetric weights and
    activations) or ``mixed`` (asymmetric activations: u8 with zero points). ``ranges``: how an
    activation's quantization range comes from the calibration images: ``histogram``, the range that
    minimises the quantization error of the values' histogram; ``minmax``, the smallest and largest
    value over all of them; ``mean_minmax``, the mean over the images of each one's (NNCF's default
    for activations, which clips the rarer extremes)."""
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
    return nncf.quantize(
        ov_model,
        nncf.Dataset(list(calibration)),
        preset=nncf.QuantizationPreset.MIXED if preset == "mixed" else nncf.QuantizationPreset.PERFORMANCE,
        subset_size=len(calibration),
        ignored_scope=nncf.IgnoredScope(names=ignored, validate=False) if ignored else None,
        advanced_parameters=nncf.AdvancedQuantizationParameters(activations_range_estimator_params=estimator),
    )
