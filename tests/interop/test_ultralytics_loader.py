"""The Ultralytics side of the loader benchmark: same images, importable without ultralytics."""

from __future__ import annotations

from tests.data.fixtures import write_twin_datasets
from tests.helpers import REPO, run_script


def test_interop_and_benchmark_modules_import_ultralytics_lazily() -> None:
    """The adapter and the benchmark task import nothing from Ultralytics until they call it."""
    code = "import sys, detector.interop.ultralytics, detector.tasks.benchmark; print('ultralytics' in sys.modules)"
    result = run_script("-c", code, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_ultralytics_loader_reads_the_same_images(tmp_path) -> None:
    from detector.interop.ultralytics import _train_images, ultralytics_train_loader

    data_yaml, _, images = write_twin_datasets(tmp_path)
    root, entries, names = _train_images(data_yaml)
    assert entries == [str(images)] and names == {0: "cat", 1: "dog", 2: "bird"}
    loader = ultralytics_train_loader(data_yaml, imgsz=64, batch=5, workers=0, seed=0)
    batch = next(iter(loader))
    assert tuple(batch["img"].shape) == (5, 3, 64, 64)
    assert sorted(batch["im_file"]) == sorted(str(p) for p in images.iterdir())


def test_our_loop_trains_on_their_batches(tiny_shapes, tiny_run, tmp_path, monkeypatch) -> None:
    """The loader swap: our training task on Ultralytics' training loader. Every epoch sees each of
    their images once, converted to our batches (uint8 RGB, boxes in input pixels inside the image);
    mosaic closes at ``close_epoch`` as their trainer closes it; the run ends with best.pt."""
    import csv

    import torch

    from detector.config import compose
    from detector.interop import ultralytics as ul
    from detector.tasks.train import run

    monkeypatch.chdir(tmp_path)
    made: list[ul.UltralyticsTrainingBatches] = []

    def batches() -> ul.UltralyticsTrainingBatches:
        made.append(ul.UltralyticsTrainingBatches(tiny_shapes / "data.yaml", 64, 4, 0, seed=0, close_epoch=1))
        return made[0]

    def flat(compose):  # their transforms, nested Compose unpacked
        for t in compose.transforms:
            yield from flat(t) if hasattr(t, "transforms") else [t]

    seen: list[tuple[int, bool]] = []
    original = ul.UltralyticsTrainingBatches.__iter__

    def watched(self):  # record, per epoch, the images seen and whether mosaic was on
        mosaic = any(type(t).__name__ == "Mosaic" and t.p > 0 for t in flat(self.loader.dataset.transforms))
        count = 0
        for batch in original(self):
            assert batch.images.dtype == torch.uint8 and batch.images.shape[1:] == (3, 64, 64)
            boxes = batch.targets.boxes
            assert (
                len(boxes)
                and (boxes > -1e-4).all()
                and (boxes < 64 + 1e-4).all()
                and (boxes[:, 2:] > boxes[:, :2]).all()
            )
            assert batch.targets.batch_index.max() < len(batch.images)
            count += len(batch.images)
            yield batch
        seen.append((count, mosaic))

    monkeypatch.setattr(ul.UltralyticsTrainingBatches, "__iter__", watched)
    run_dir = run(compose("train", [*tiny_run, "train.epochs=2"]), batches=batches)
    assert seen == [(8, True), (8, False)]
    with open(run_dir / "metrics.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == 2
    assert (run_dir / "weights" / "best.pt").is_file()
    try:
        made[0].set_epoch(1, start=4)
    except RuntimeError as err:
        assert "cannot resume mid-epoch" in str(err)
    else:
        raise AssertionError("a mid-epoch position was accepted")


def test_loader_swap_refuses_our_augmentation_overrides() -> None:
    import pytest

    from detector.config.schemas import CompareRecipeConfig, RecipeLoader
    from detector.errors import ConfigError
    from detector.tools.compare.headtohead import their_batches

    recipe = CompareRecipeConfig(our_loader=RecipeLoader.ultralytics, ours=["augment.mosaic.p=0"])
    with pytest.raises(ConfigError, match=r"augment\.mosaic\.p=0 would not change"):
        their_batches(recipe, "data.yaml", 64, 0)
