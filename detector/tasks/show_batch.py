"""``python scripts/show_batch.py``: one augmented batch as a PNG grid with boxes and class names."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from detector.config import instantiate_node
from detector.config.schemas import ShowBatchConfig
from detector.data.build import AugmentSettings, load_split, train_dataset
from detector.data.loader import collate
from detector.images import draw_boxes, image_grid, save_png
from detector.runs import make_run_dir
from detector.tasks.command_line import CommandLine


def run(cfg: DictConfig, command_line: CommandLine = CommandLine()) -> Path:
    """Draw the first ``batch`` samples of ``split`` through the training pipeline, with the random
    draws of ``epoch`` (mosaic on: the close-mosaic epochs depend on a training length)."""
    settings: ShowBatchConfig = OmegaConf.to_object(cfg)
    source = instantiate_node(settings.data, "data")
    index = load_split(source, settings.split)
    augment = AugmentSettings(**instantiate_node(settings.augment, "augment"))
    dataset = train_dataset(index, augment, settings.imgsz, seed=settings.seed, epochs=None)
    dataset.set_epoch(settings.epoch)
    batch = collate([dataset[i % len(dataset)] for i in range(settings.batch)])
    images = []
    for b in range(len(batch)):
        mine = batch.targets.batch_index == b
        image = batch.images[b].permute(1, 2, 0).numpy()
        images.append(
            draw_boxes(image, batch.targets.boxes[mine].numpy(), batch.targets.classes[mine].numpy(), index.names)
        )
    run_dir = make_run_dir(settings.project, settings.task, settings.name, settings.exist_ok)
    path = save_png(run_dir / f"{settings.split}_batch.png", image_grid(images))
    print(f"{len(batch)} images, {len(batch.targets.classes)} boxes -> {path}")
    return path
