"""Inspect every conv layer: ``python scripts/inspect_layers.py checkpoint=PATH`` or ``model=NAME``.

Prints a table of every convolution in forward order (kind, channels, kernel, stride, padding,
dilation, groups, parameters, MACs, hooked input and output shapes checked against the formula,
receptive field and jump, the BatchNorm that follows) and one of weight statistics; writes
``format=csv|json|markdown`` to ``out=FILE`` or ``runs/inspect/<name>/``, filter grids
(``kernels=LAYER``), feature-map grids (``image=PATH feature_maps=[LAYER,...]``) and the weight
change against another checkpoint (``compare_to=PATH``)."""

from detector.cli import hydra_entry
from detector.tasks.inspect import run

if __name__ == "__main__":
    hydra_entry("inspect", run)
