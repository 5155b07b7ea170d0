"""``scripts/benchmark.py``: ours against Ultralytics, part by part, on the same machine and inputs."""
