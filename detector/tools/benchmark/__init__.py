"""``scripts/benchmark.py``: ours against Ultralytics, part by part, on the same machine and inputs:
the reference weights, one module per measured part (train_step, loader, predict, val), the figure
and the report. The clocks are :mod:`detector.tools.timing`."""
