"""The Ultralytics side of the loader benchmark: same images, importable without ultralytics."""

from __future__ import annotations

from tests.data.fixtures import write_twin_datasets
from tests.helpers import REPO, run_script


def test_interop_module_imports_ultralytics_lazily() -> None:
    code = "import sys, detector.interop.ultralytics; print('ultralytics' in sys.modules)"
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
