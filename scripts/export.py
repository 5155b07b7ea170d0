"""Export: ``python scripts/export.py checkpoint=PATH format=onnx|torchscript [dynamic=true imgsz=640]``.

The fused model with decoding (``images -> boxes, scores``; NMS stays outside) goes to
``runs/export/<name>/<checkpoint>.onnx`` (opset 17+) or ``.torchscript``; ``scripts/predict.py``
accepts the ``.onnx`` file as its checkpoint."""

from detector.cli import hydra_entry
from detector.tasks.export import run

if __name__ == "__main__":
    hydra_entry("export", run)
