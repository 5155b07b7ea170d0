"""Check a dataset: ``python scripts/check_data.py data=NAME [splits=[train,val]]``.

Decodes every image and checks every label once (cached), prints per split the images,
instances, backgrounds, per-class counts, a box-size histogram and every problem found, and
writes ``<split>_problems.txt`` into ``runs/check_data/<name>/``."""

from detector.cli import hydra_entry
from detector.tasks.check_data import run

if __name__ == "__main__":
    hydra_entry("check_data", run)
