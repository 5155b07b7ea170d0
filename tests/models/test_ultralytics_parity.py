"""Architecture parity with Ultralytics models built from their own YAML files (offline)."""

from __future__ import annotations

import pytest
import torch

from detector import build_model, summary
from detector.boxes import cxcywh_to_xyxy
from tests.helpers import YOLO_MODELS, assert_same_detections, randomize_batchnorm

# Parameter counts the Ultralytics documentation gives for these models (80 classes).
DOCUMENTED_PARAMS = {
    "yolov8n": 3_157_200,
    "yolo11n": 2_624_080,
    # YOLO26: both head branches (the YAML comments; the released, fused files hold one)
    "yolo26n": 2_572_280,
    "yolo26s": 10_009_784,
    "yolo26m": 21_896_248,
    "yolo26l": 26_299_704,
    "yolo26x": 58_993_368,
}


def ultralytics_model(name: str, num_classes: int = 80) -> torch.nn.Module:
    from ultralytics.nn.tasks import DetectionModel

    return DetectionModel(f"{name}.yaml", nc=num_classes, verbose=False)


# the s, l and x scales take seconds each to build twice: the slow run covers them (n and the m scales,
# where YOLO11 and YOLO26 switch to C3k blocks, stay in the default run; yolov8m is only wider)
SCALES = [pytest.param(n, marks=pytest.mark.slow) if n[-1] in "slx" or n == "yolov8m" else n for n in YOLO_MODELS]


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


@pytest.mark.parametrize("name", ["yolo26n", pytest.param("yolo26m", marks=pytest.mark.slow)])
def test_yolo26_both_branches_and_end_to_end_detections_equal(name: str) -> None:
    """YOLO26 with Ultralytics' tensors: both branches' raw outputs (training and evaluation), the
    one-to-many decoding, and the end-to-end top-k detections ``[B, 300, 6]``, unfused and fused."""
    torch.manual_seed(0)
    from detector.models.heads import top_k

    theirs = ultralytics_model(name, num_classes=5)
    randomize_batchnorm(theirs)
    ours = build_model(name, num_classes=5)
    ours.load_state_dict(dict(zip(ours.state_dict().keys(), theirs.state_dict().values())))
    # BatchNorm eps / momentum are not in the state dict: they must be Ultralytics' by construction
    norms = [m for m in ours.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and all(m.eps == 1e-3 and m.momentum == 0.03 for m in norms)
    x = torch.rand(2, 3, 160, 128)

    def flat(maps: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat([t.flatten(2) for t in maps], 2)

    ours.train()
    theirs.train()
    with torch.no_grad():
        out, preds = ours(x), theirs(x)
    assert out.branch == "one2many" and out.one2one is not None and out.one2one.branch == "one2one"
    for mine, key in ((out, "one2many"), (out.one2one, "one2one")):
        torch.testing.assert_close(flat(mine.box), preds[key]["boxes"], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(flat(mine.cls), preds[key]["scores"], atol=1e-5, rtol=1e-5)

    ours.eval()
    theirs.eval()
    detect = theirs.model[-1]
    with torch.no_grad():
        assert ours(x).branch == "one2one" and ours(x).one2one is None  # evaluation runs one branch
        with ours.head.running(("one2many", "one2one")):
            both = ours(x)
        decoded = theirs(x)[0]  # one-to-many: [B, 4 + nc, A] cx, cy, w, h and probabilities
        boxes, scores = ours.head.decode(both, "one2many")
        torch.testing.assert_close(boxes, cxcywh_to_xyxy(decoded[:, :4].transpose(1, 2)), atol=1e-3, rtol=1e-5)
        torch.testing.assert_close(scores, decoded[:, 4:].transpose(1, 2), atol=1e-5, rtol=0)
        detect._end2end = True
        expected = theirs(x)[0]  # [B, 300, 6] x1, y1, x2, y2, score, class
        assert expected.shape == (2, 300, 6)
        got = top_k(*ours.head.decode(ours(x)), max_det=300)
        torch.testing.assert_close(got, expected, atol=1e-3, rtol=0)  # same rows, same order
        assert torch.equal(got[..., 5], expected[..., 5])
        ours.fuse()
        theirs.fuse(verbose=False)
        assert detect.cv2 is None  # their fuse drops the branch not used
        assert_same_detections(top_k(*ours.head.decode(ours(x)), max_det=300), theirs(x)[0])


def test_yolo26_one_to_one_branch_sees_detached_features() -> None:
    """A loss on the one-to-one branch alone reaches that branch's weights and nothing before the head."""
    model = build_model("yolo26n", num_classes=3).train()
    out = model(torch.rand(2, 3, 64, 64))
    sum(t.sum() for t in out.one2one.box + out.one2one.cls).backward()
    grads = {name: p.grad is not None and bool(p.grad.abs().sum() > 0) for name, p in model.named_parameters()}
    assert all(grads[n] for n in grads if n.startswith(("head.one2one_box", "head.one2one_cls")))
    assert not any(grads[n] for n in grads if not n.startswith(("head.one2one_box", "head.one2one_cls")))


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
