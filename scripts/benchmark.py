"""Ours against Ultralytics: ``python scripts/benchmark.py [parts=[train_step,loader,predict,val] repeats=5 ...]``.

Training-step throughput, loader throughput, prediction latency and validation time, each measured
for both libraries in turn on the same machine, weights and inputs (the CPU, and the GPU where CUDA
is present); prints a table and writes ``runs/benchmark/<name>/benchmark.json``. Every ratio is
ours / ultralytics: above 1 is ours faster for throughputs, below 1 for times."""

import os

if __name__ == "__main__":
    os.environ["YOLO_OFFLINE"] = "1"  # before ultralytics is first imported: it must not reach the network
    os.environ.setdefault("YOLO_VERBOSE", "False")  # no progress bars or logs from Ultralytics (ours prints none)

    from detector.cli import hydra_entry
    from detector.tasks.benchmark import run

    hydra_entry("benchmark", run)
