"""Conv-layer inspection: what every convolution does, what it sees, and what it learned.

```python
from detector import build_model
from detector.inspect import inspect_layers, select_layers

report = inspect_layers(build_model("yolov8n"), imgsz=640)   # LayerReport: one ConvLayer per conv
first = report.layers[0]  # kernel, stride, ..., input/output shape, receptive_field, jump, norm, weights
```
"""

from detector.inspect.layers import (
    KINDS,
    ConvLayer,
    LayerReport,
    conv_kind,
    conv_output_size,
    conv_transpose_output_size,
    inspect_layers,
    select_layers,
    totals,
)
from detector.inspect.receptive import Field, FieldTracker, trace_fields
from detector.inspect.report import render
from detector.inspect.stats import (
    WeightChange,
    WeightStats,
    compare_weights,
    weight_stats,
)
from detector.inspect.viz import feature_grid, feature_maps, kernel_grid, load_image

__all__ = [
    "KINDS",
    "ConvLayer",
    "Field",
    "FieldTracker",
    "LayerReport",
    "WeightChange",
    "WeightStats",
    "compare_weights",
    "conv_kind",
    "conv_output_size",
    "conv_transpose_output_size",
    "feature_grid",
    "feature_maps",
    "inspect_layers",
    "kernel_grid",
    "load_image",
    "render",
    "select_layers",
    "totals",
    "trace_fields",
    "weight_stats",
]
