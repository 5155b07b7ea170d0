"""Training data-loader throughput, ours against Ultralytics', on the same images.

    python scripts/benchmark_loader.py [--imgsz 640 --batch 16 --workers 2 --batches 30 --warmup 3
                                        --rounds 5 --augment default --out runs/benchmark/loader.json]

Both loaders read the 'train' split of the built-in shapes dataset (``data/shapes/data.yaml``,
generated if missing) with the full training augmentation (mosaic, affine, colour, flip; ours from
``configs/augment/<--augment>.yaml``). ``--workers 0`` measures both in this one process. Each
measurement starts fresh workers, takes ``--warmup`` batches untimed (worker start-up included)
and then times ``--batches`` batches. The measurements alternate (ours, theirs, ours, theirs, ...)
so that both see the same machine conditions; the figure reported is the median over rounds.
Ultralytics is imported before the first measurement, so its process-wide settings
(``cv2.setNumThreads(0)``) apply to both loaders alike.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from detector.config import compose, instantiate_node
from detector.data.build import AugmentSettings, load_split
from detector.errors import ConfigError
from detector.runs import write_text_atomic
from detector.tools.benchmark.measure import images_per_second, training_loaders


def write_json(path: Path, content: dict[str, Any]) -> None:
    write_text_atomic(path, json.dumps(content, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batches", type=int, default=30, help="timed batches per measurement")
    parser.add_argument("--warmup", type=int, default=3, help="untimed batches before timing")
    parser.add_argument("--rounds", type=int, default=5, help="measurements of each loader (at least 2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--augment", default="default", help="our augment config (configs/augment/NAME.yaml)")
    parser.add_argument("--out", type=Path, default=Path("runs/benchmark/loader.json"))
    args = parser.parse_args()
    if args.rounds < 2:
        parser.error("--rounds must be at least 2")
    os.environ["YOLO_OFFLINE"] = "1"  # before ultralytics is first imported (inside the interop module)
    from detector.interop.ultralytics import TRAIN_AUGMENT

    try:
        cfg = compose("train", [f"imgsz={args.imgsz}", f"augment={args.augment}"])
    except ConfigError as err:
        parser.error(str(err))
    source = instantiate_node(cfg.data, "data")
    index = load_split(source, "train")
    # the same loaders and measurement as the loader figure of scripts/benchmark.py
    augment = AugmentSettings(**instantiate_node(cfg.augment, "augment"))
    loaders = training_loaders(
        source, index, augment, args.imgsz, args.batch, args.workers, seed=args.seed, epochs=cfg.train.epochs
    )
    if len(loaders["ours"].loader) < args.warmup + args.batches:
        parser.error(f"an epoch has {len(loaders['ours'].loader)} batches: --warmup + --batches must not exceed it")

    rounds: dict[str, list[float]] = {name: [] for name in loaders}
    for r in range(args.rounds):
        for name, timed in loaders.items():
            rate = images_per_second(timed.loader, timed.count, args.warmup, args.batches, timed.stop)
            rounds[name].append(rate)
            print(f"round {r + 1}/{args.rounds} {name:>11}: {rate:7.1f} images/s")
    median = {name: statistics.median(rates) for name, rates in rounds.items()}
    ratio = median["ours"] / median["ultralytics"]

    table = Table(title=f"Training loader throughput (imgsz {args.imgsz}, batch {args.batch}, {args.workers} workers)")
    table.add_column("loader")
    table.add_column("images/s (median)", justify="right")
    table.add_column("rounds", justify="right")
    for name, rates in rounds.items():
        table.add_row(name, f"{median[name]:.1f}", "  ".join(f"{x:.1f}" for x in rates))
    table.add_row("ours / ultralytics", f"{ratio:.2f}x", "")
    Console().print(table)

    import ultralytics  # already imported by the interop module; only its version is read here

    write_json(
        args.out,
        {
            "images_per_s": median,
            "ratio_ours_over_ultralytics": ratio,
            "statistic": "median over rounds",
            "rounds_images_per_s": rounds,
            "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "data": source.where,
            "num_images": len(index),
            "ultralytics_augment": {k: v for k, v in TRAIN_AUGMENT.items() if k != "augmentations"},
            "versions": {"torch": torch.__version__, "ultralytics": ultralytics.__version__},
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        },
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
