"""scripts/inspect_layers.py: an Ultralytics checkpoint at 640, pictures, formats, filters, diffs and one-line errors."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from detector.checkpoint import save_checkpoint
from detector.config import compose
from detector.errors import ConfigError
from detector.models.zoo import instantiate_model
from detector.tasks.inspect import run
from tests.helpers import REPO, run_script, write_ultralytics_checkpoint

SCRIPT = str(REPO / "scripts" / "inspect_layers.py")


def png(path: Path, h: int = 96, w: int = 128) -> Path:
    cv2.imwrite(str(path), np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8))
    return path


def inspect(tmp_path: Path, *overrides: str) -> Path | None:
    return run(compose("inspect", [f"project={tmp_path / 'runs'}", "device=cpu", *overrides]))


def test_ultralytics_checkpoint_at_640_with_pictures(tmp_path) -> None:
    from ultralytics.nn.tasks import DetectionModel

    checkpoint = write_ultralytics_checkpoint(tmp_path / "yolov8n.pt", "yolov8n.yaml", num_classes=80)
    theirs = [
        m for m in DetectionModel("yolov8n.yaml", nc=80, verbose=False).modules() if isinstance(m, torch.nn.Conv2d)
    ]
    image = png(tmp_path / "street.png")
    result = run_script(
        SCRIPT,
        f"checkpoint={checkpoint}",
        "imgsz=640",
        f"out={tmp_path / 'layers.json'}",
        "kernels=first",
        f"image={image}",
        "feature_maps=[backbone.stem.conv,neck.down3.conv]",
        "device=cpu",
        f"project={tmp_path / 'runs'}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "convolutions at input 3x640x640" in result.stdout and "Traceback" not in result.stderr

    document = json.loads((tmp_path / "layers.json").read_text())
    rows = document["layers"]
    assert len(rows) == len(theirs) == 64  # every conv module, the DFL's unused one included

    def geometry(r):
        return (r["in_channels"], r["out_channels"], tuple(r["kernel"]), tuple(r["stride"]))

    assert sorted(map(geometry, rows)) == sorted(
        (m.in_channels, m.out_channels, m.kernel_size, m.stride) for m in theirs
    )
    first = rows[0]
    assert (first["kernel"], first["stride"], first["padding"]) == ([3, 3], [2, 2], [1, 1])
    assert (first["in_channels"], first["out_channels"], first["output_shape"]) == (3, 16, [16, 320, 320])
    assert all(r["shape_ok"] for r in rows if r["path"] != "head.dfl.conv")
    assert [r["path"] for r in rows if r["shape_ok"] is None] == ["head.dfl.conv"]  # never called by forward()
    assert document["totals"]["shape_mismatches"] == 0 and round(document["totals"]["gflops"], 1) == 8.7

    run_dir = tmp_path / "runs" / "inspect" / "exp"
    # 16 colour filters of 3x3 enlarged to 30 px, 4 x 4 with 4 px gaps: 4*30 + 3*4
    kernels = cv2.imread(str(run_dir / "kernels_backbone.stem.conv.png"))
    assert kernels.shape == (132, 132, 3)
    # 16 maps of 320x320 shrunk to 160: 4*160 + 3*4; 64 maps of 40x40 (stride 16): 8*40 + 7*4
    assert cv2.imread(str(run_dir / "features_backbone.stem.conv.png")).shape == (652, 652, 3)
    assert cv2.imread(str(run_dir / "features_neck.down3.conv.png")).shape == (348, 348, 3)


def test_yolo26_checkpoint_lists_every_conv_and_marks_the_branch_not_run(tmp_path) -> None:
    """The issue's seed example: ``inspect_layers.py checkpoint=yolo26n.pt`` (a file Ultralytics wrote)."""
    from ultralytics.nn.tasks import DetectionModel

    checkpoint = write_ultralytics_checkpoint(tmp_path / "yolo26n.pt", "yolo26n.yaml", num_classes=80)
    theirs = [
        m for m in DetectionModel("yolo26n.yaml", nc=80, verbose=False).modules() if isinstance(m, torch.nn.Conv2d)
    ]
    inspect(tmp_path, f"checkpoint={checkpoint}", "imgsz=640", f"out={tmp_path / 'layers.json'}")
    document = json.loads((tmp_path / "layers.json").read_text())
    rows = document["layers"]
    assert len(rows) == len(theirs) == 126  # both head branches, no DFL conv
    first = rows[0]
    assert (first["kernel"], first["stride"], first["padding"]) == ([3, 3], [2, 2], [1, 1])
    assert (first["in_channels"], first["out_channels"], first["output_shape"]) == (3, 16, [16, 320, 320])
    not_run = {r["path"].split(".")[1] for r in rows if r["shape_ok"] is None}
    assert not_run == {"box", "cls"}  # the one-to-many branch: end-to-end inference runs the other
    assert all(r["shape_ok"] for r in rows if r["shape_ok"] is not None)
    # the convs of the branch that runs: Ultralytics' fused 5.48 less the attention's matmuls (no convs)
    assert round(document["totals"]["gflops"], 2) == 5.36


class RunsCode:
    """Unpickling it calls ``fn(arg)``: what a malicious checkpoint does."""

    def __init__(self, fn, arg: str) -> None:
        self.fn, self.arg = fn, arg

    def __reduce__(self):
        return (self.fn, (self.arg,))


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_a_malicious_pickle_is_refused_without_running(tmp_path, writer: str) -> None:
    import builtins

    marker = tmp_path / "pwned"
    if writer == "torch.save":
        payload = {"model": RunsCode(os.system, f"touch {marker}")}
        torch.save(payload, tmp_path / "evil.pt")
    else:
        payload = {"ema": RunsCode(builtins.exec, f"open({str(marker)!r}, 'w').close()")}
        with open(tmp_path / "evil.pt", "wb") as f:
            pickle.dump(payload, f)
    result = run_script(SCRIPT, f"checkpoint={tmp_path / 'evil.pt'}", "device=cpu", cwd=tmp_path)
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "evil.pt" in lines[0], result.stderr
    assert not marker.exists() and not (tmp_path / "runs").exists()


def test_model_name_at_a_rectangular_size_filtered_to_csv(tmp_path, capsys) -> None:
    run_dir = inspect(tmp_path, "model=yolov8n", "imgsz=[64,96]", "format=csv", "layers=backbone.*", "kind=regular")
    lines = (run_dir / "layers.csv").read_text().splitlines()
    header, rows = lines[0].split(","), [dict(zip(lines[0].split(","), line.split(","))) for line in lines[1:]]
    assert "receptive_field" in header and "gamma_near_zero" in header
    assert rows and all(r["kind"] == "regular" and r["path"].startswith("backbone.") for r in rows)
    assert rows[0]["path"] == "backbone.stem.conv" and rows[0]["output_shape"] == "16x32x48"
    assert "convolutions at input 3x64x96" in capsys.readouterr().out
    assert run_dir == tmp_path / "runs" / "inspect" / "exp"


def test_fused_model_to_markdown_named_by_out(tmp_path, capsys) -> None:
    out = tmp_path / "report" / "layers.md"
    assert inspect(tmp_path, "model=yolov8n", "fuse=true", "imgsz=64", f"out={out}") is None  # no run directory
    text = out.read_text()
    assert text.count("| fused |") == 57 and "| head.dfl.conv |" in text  # every ConvBNAct; 7 plain convs
    assert "convolutions at input 3x64x64" in capsys.readouterr().out
    assert not (tmp_path / "runs").exists()


def test_compare_to_reports_the_relative_change(tmp_path) -> None:
    cfg = compose("train", ["model=yolov8n", "model.scale.width=0.0625", "data.num_classes=2", "data.names=[a,b]"])
    config = OmegaConf.to_container(cfg.model, resolve=True)
    model = instantiate_model(config)
    before = save_checkpoint(tmp_path / "before.pt", model, config, ["a", "b"])
    with torch.no_grad():
        model.backbone.stem.conv.weight.mul_(1.1)  # 10 % larger everywhere
    after = save_checkpoint(tmp_path / "after.pt", model, config, ["a", "b"])
    inspect(tmp_path, f"checkpoint={before}", f"compare_to={after}", "imgsz=64", f"out={tmp_path / 'diff.json'}")
    rows = {r["path"]: r for r in json.loads((tmp_path / "diff.json").read_text())["layers"]}
    assert rows["backbone.stem.conv"]["relative_change"] == pytest.approx(0.1, rel=1e-5)
    assert all(r["relative_change"] == 0.0 for path, r in rows.items() if path != "backbone.stem.conv")


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["checkpoint=missing.pt"], "checkpoint not found: missing.pt"),
        ([], "give checkpoint=PATH (our .pt or an Ultralytics .pt) or model=NAME"),
        (["model=yolov8n", "checkpoint=x.pt"], "give checkpoint=PATH or model=NAME, not both"),
        (
            ["model=yolov8n", "kernels=backbone.stem.cnv"],
            "kernels=backbone.stem.cnv: the model has no convolution at that path; did you mean backbone.stem.conv",
        ),
        (["model=yolov8n", "layers=neck.nothing.*"], "layers=neck.nothing.* matches no convolution"),
        (["model=yolov8n", "out=table.txt"], "out=table.txt: cannot tell the format from its suffix"),
        (["model=yolov8n", "feature_maps=[backbone.stem]"], "feature_maps=... needs image=PATH"),
        (["model=yolov8n", "image=nothere.png"], "image=nothere.png: no such file"),
        (["model=yolov8n", "imgsz=[64,100]"], "imgsz=[64,100] must be a positive multiple of 32"),
        (["model=yolov8n", "format=xml"], "invalid value for 'format'"),
        (["model=yolov8n", "kind=dense"], "invalid value for 'kind'"),
        (["model=yolov9z"], "unknown model 'yolov9z'"),
    ],
)
def test_bad_input_is_one_clear_line(tmp_path, monkeypatch, overrides: list[str], expected: str) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as err:
        inspect(tmp_path, "imgsz=64", *overrides)
    assert expected in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "runs").exists()
