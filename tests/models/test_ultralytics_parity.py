"""Architecture parity with Ultralytics models built from their own YAML files (offline)."""

from __future__ import annotations

import pytest
import torch

from detector import build_model, summary
from detector.boxes import cxcywh_to_xyxy
from tests.helpers import YOLO_MODELS, randomize_batchnorm

# Parameter counts the Ultralytics documentation gives for these models (80 classes).
DOCUMENTED_PARAMS = {"yolov8n": 3_157_200, "yolo11n": 2_624_080}


def ultralytics_model(name: str, num_classes: int = 80) -> torch.nn.Module:
    from ultralytics.nn.tasks import DetectionModel

    return DetectionModel(f"{name}.yaml", nc=num_classes, verbose=False)


# the l and x scales take seconds each to build twice: the slow run covers them
SCALES = [pytest.param(n, marks=pytest.mark.slow) if n[-1] in "lx" else n for n in YOLO_MODELS]


@pytest.mark.parametrize("name", SCALES)
def test_parameters_flops_and_state_dict_order_match(name: str) -> None:
    from ultralytics.utils.torch_utils import get_flops

    ours = build_model(name)
    theirs = ultralytics_model(name)
    ours_params = sum(p.numel() for p in ours.parameters())
    assert ours_params == sum(p.numel() for p in theirs.parameters())
    if name in DOCUMENTED_PARAMS:
        assert ours_params == DOCUMENTED_PARAMS[name]
    ours_shapes = [tuple(t.shape) for t in ours.state_dict().values()]
    theirs_shapes = [tuple(t.shape) for t in theirs.state_dict().values()]
    assert ours_shapes == theirs_shapes  # one to one, in order

    # Ultralytics reports (and documents) the GFLOPs of the fused model; flop_counter counts convs
    # and matmuls, which is what remains once BatchNorm is folded.
    theirs_gflops = get_flops(theirs.fuse(verbose=False), 640)
    ours_gflops = summary(ours, imgsz=640)["gflops"]
    assert ours_gflops == pytest.approx(theirs_gflops, rel=0.01)


@pytest.mark.parametrize("name", ["yolov8n", "yolo11n", "yolo11m"])
def test_outputs_equal_with_the_same_weights(name: str) -> None:
    """Copy Ultralytics' tensors onto ours by position; raw and decoded outputs must agree."""
    theirs = ultralytics_model(name, num_classes=7)
    randomize_batchnorm(theirs)
    ours = build_model(name, num_classes=7)
    ours.load_state_dict(dict(zip(ours.state_dict().keys(), theirs.state_dict().values())))
    ours.eval()
    theirs.eval()

    detect = theirs.model[-1]
    captured: dict[tuple[str, int], torch.Tensor] = {}
    for i in range(3):
        detect.cv2[i].register_forward_hook(lambda m, a, out, i=i: captured.__setitem__(("box", i), out))
        detect.cv3[i].register_forward_hook(lambda m, a, out, i=i: captured.__setitem__(("cls", i), out))

    x = torch.rand(2, 3, 96, 160)
    with torch.no_grad():
        out = ours(x)
        decoded = theirs(x)[0]  # [B, 4 + nc, A]: cx, cy, w, h in pixels, then class probabilities
        boxes, scores = ours.head.decode(out)
    for i in range(3):
        torch.testing.assert_close(out.box[i], captured[("box", i)], atol=1e-4, rtol=0)
        torch.testing.assert_close(out.cls[i], captured[("cls", i)], atol=1e-4, rtol=0)
    torch.testing.assert_close(boxes, cxcywh_to_xyxy(decoded[:, :4].transpose(1, 2)), atol=1e-3, rtol=1e-5)
    torch.testing.assert_close(scores, decoded[:, 4:].transpose(1, 2), atol=1e-5, rtol=0)


def test_core_runs_without_ultralytics(tmp_path) -> None:
    """The package imports and builds models when ultralytics cannot be imported."""
    from tests.helpers import REPO, run_script

    code = (
        "import sys; sys.modules['ultralytics'] = None\n"
        "import detector\n"
        "m = detector.build_model('yolo11n', num_classes=3)\n"
        "print(detector.summary(m, 64)['params'])\n"
    )
    result = run_script("-c", code, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.strip()) > 0
