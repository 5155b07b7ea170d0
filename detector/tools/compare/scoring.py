"""Scoring the contenders: every model through our evaluator on one split, its params, GFLOPs and
latency, and for Ultralytics models their own validator, their module's latency and the parity of
our import with it. Each model's figures are written under ``models/<slug>/``."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from detector.config.schemas import CompareConfig
from detector.data.build import val_dataset
from detector.data.index import SplitIndex
from detector.data.loader import build_loader
from detector.eval.coco import evaluate_branches
from detector.eval.postprocess import PostProcess
from detector.interop import ultralytics as ul
from detector.models.detector import Detector
from detector.models.heads import use_branch
from detector.models.summary import summary
from detector.runs import write_text_atomic
from detector.tools.compare.classes import class_map, restrict_classes, restrict_ultralytics_classes
from detector.tools.compare.contenders import Contender
from detector.tools.compare.exported import score_exported
from detector.tools.compare.headtohead import TrainedRun
from detector.tools.timing import median_ms


@dataclass
class Probe:
    """The split's first image as the latency and parity input: ``x`` ``[1, 3, imgsz, imgsz]`` in
    [0, 1] on the device, its letterbox and original size."""

    x: torch.Tensor
    letterbox: torch.Tensor  # [1, 4]
    orig_sizes: torch.Tensor  # [1, 2]

    @property
    def orig_size(self) -> tuple[int, int]:
        return tuple(int(v) for v in self.orig_sizes[0])  # type: ignore[return-value]


def compare_models(
    contenders: list[Contender],
    index: SplitIndex,
    data_yaml: Path | None,
    settings: CompareConfig,
    post: PostProcess,
    device: torch.device,
    run_dir: Path,
    trained: dict[str, TrainedRun],
    log: Callable[[str], None] = print,
    latency: bool = True,
) -> list[dict[str, Any]]:
    """Evaluate, measure and time every contender (``latency=False``: no latency, ``None`` in its
    columns); write its own files under ``models/<slug>/``. Returns one table row per contender."""
    dataset = val_dataset(index, settings.imgsz)
    sample = next(iter(build_loader(dataset, 1, shuffle=False, workers=0, distributed=False)))
    probe = Probe(sample.images.to(device).float().div_(255), sample.letterbox.to(device), sample.orig_sizes.to(device))
    used: set[str] = set()
    rows = []
    for c in contenders:
        log(f"[bold]{c.label}[/bold] ({c.kind})")
        folder = run_dir / "models" / slug(c.label, used)
        if c.exported is not None:
            row, metrics, predictions = score_exported(c, index, settings, post, latency)
        else:
            row, metrics, predictions = score(
                c, index, dataset, data_yaml, settings, post, device, probe, folder, latency
            )
        run = trained.get(c.label)
        row["train_images_per_s"] = None if run is None else run.images_per_s
        row["train_time_s"] = None if run is None else run.train_time_s
        row["wall_time_s"] = None if run is None else run.wall_time_s
        if run is not None:
            metrics["training"] = {
                "run_dir": str(run.run_dir),
                "epochs": run.epochs,
                "train_images": run.train_images,
                "train_time_s": run.train_time_s,
                "images_per_s": run.images_per_s,
                "wall_time_s": run.wall_time_s,
                "workers": run.workers,
            }
        write_model_outputs(folder, metrics, predictions)
        rows.append(row)
        if c.model is not None:
            c.model.cpu()
        if c.ultralytics is not None:
            c.ultralytics.cpu()
    return rows


def score(
    c: Contender,
    index: SplitIndex,
    dataset: Any,
    data_yaml: Path | None,
    settings: CompareConfig,
    post: PostProcess,
    device: torch.device,
    probe: Probe,
    folder: Path,
    latency: bool = True,
) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """One contender: its table row (without the training columns), its ``metrics.json`` content
    and its COCO predictions; its latency only when ``latency``."""
    data_names = list(index.names)
    keep = class_map(c.names, data_names, c.label)
    model = c.model.to(device).eval()  # type: ignore[union-attr]  (exported contenders: score_exported)
    scored = model if keep is None else restrict_classes(model, keep)
    if len(model.head.branches) > 1:  # branch= concerns the end-to-end models of the list
        use_branch(model.head, settings.branch)
        use_branch(scored.head, settings.branch)
    branch = model.head.inference  # what it predicts with; an end-to-end model's other branch beside it
    branches = (branch, *(b for b in model.head.branches if b != branch))
    results = evaluate_branches(scored, index, dataset, post, device, branches, settings.batch, settings.workers)
    result = results[branch]
    other = results[branches[1]].scores.metrics if len(branches) > 1 else {}
    info = summary(c.model, settings.imgsz)
    ms = None
    if latency:
        step = ours_step(model, probe.x, post, probe.letterbox, probe.orig_sizes)
        ms = median_ms(step, settings.latency_warmup, settings.latency_repeats)
    notes = list(c.notes)
    if keep is not None:
        notes.append(
            f"classes matched by name: {len(keep)} of the model's {len(c.names)}; detections of the "
            "others dropped before NMS; params, GFLOPs and latency are of the whole model"
        )
    metrics: dict[str, Any] = {
        "model": c.label,
        "kind": c.kind,
        "our_evaluator": result.scores.metrics,
        "branch": branch,
        "branches": {b: r.scores.metrics for b, r in results.items()},
        "per_class_AP50-95": result.scores.per_class,
        "params": info["params"],
        "gflops": info["gflops"],
        "latency_ms": ms,
        "speed_ms_per_image": result.speed,
        "class_map": None if keep is None else {n: c.names[k] for n, k in zip(data_names, keep)},
    }
    theirs: dict[str, Any] = {}
    if c.ultralytics is not None:
        theirs = score_theirs(
            c, model, keep, data_names, data_yaml, settings, post, device, probe, folder, notes, latency
        )
        metrics.update(theirs)
    their_validator = theirs.get("ultralytics_validator", {})
    row = {
        "model": c.label,
        "kind": c.kind,
        "classes": len(data_names) if keep is None else f"{len(data_names)} of {len(c.names)}",
        "mAP50-95": result.scores.metrics["mAP50-95"],
        "mAP50": result.scores.metrics["mAP50"],
        "branch": branch if other else None,
        "other_mAP50-95": other.get("mAP50-95"),
        "other_mAP50": other.get("mAP50"),
        "ultralytics_mAP50-95": their_validator.get("mAP50-95"),
        "ultralytics_mAP50": their_validator.get("mAP50"),
        "params": info["params"],
        "gflops": info["gflops"],
        "latency_ms": ms,
        "ultralytics_latency_ms": theirs.get("ultralytics_latency_ms"),
        "notes": "; ".join(notes),
    }
    return row, metrics, result.predictions


def score_theirs(
    c: Contender,
    model: Detector,
    keep: list[int] | None,
    data_names: list[str],
    data_yaml: Path | None,
    settings: CompareConfig,
    post: PostProcess,
    device: torch.device,
    probe: Probe,
    folder: Path,
    notes: list[str],
    latency: bool = True,
) -> dict[str, Any]:
    """Their module's figures: parity with our import, latency (when ``latency``), and their
    validator's where it can run (``notes`` gets a line where it cannot)."""
    theirs = c.ultralytics.to(device).eval()  # type: ignore[union-attr]
    post = post.for_branch(model.head.inference)  # an end-to-end model: theirs by its one-to-one branch too
    figures: dict[str, Any] = {"parity": parity(model, theirs, probe.x)}
    if latency:
        step = ul.inference_step(theirs, probe.x, post, probe.orig_size)
        figures["ultralytics_latency_ms"] = median_ms(step, settings.latency_warmup, settings.latency_repeats)
    if not settings.ultralytics_val:
        notes.append("Ultralytics' validator not run (ultralytics_val=false)")
        return figures
    if data_yaml is None:
        notes.append("Ultralytics' validator not run: it cannot read COCO JSON data")
        return figures
    validated = theirs if keep is None else restrict_ultralytics_classes(theirs, keep, data_names)
    if validated is None:
        notes.append("Ultralytics' validator not run: its head could not be restricted to the data's classes")
        return figures
    figures["ultralytics_validator"] = ul.validate(
        copy.deepcopy(validated).float(),
        data_yaml,
        settings.split,
        settings.imgsz,
        settings.batch,
        post,
        device,
        folder / "ultralytics_val",
        settings.ultralytics_rect,
    )
    if keep is not None:
        notes.append(
            "Ultralytics' validator ran on their module restricted to the data's classes "
            "the same way (it matches classes by index, not by name)"
        )
    return figures


def ours_step(
    model: Detector, x: torch.Tensor, post: Any, letterbox: torch.Tensor, orig_sizes: torch.Tensor
) -> Callable[[], Any]:
    """Our inference step: the fused model, decoding and :class:`PostProcess` (letterbox undone)."""
    fused = copy.deepcopy(model).fuse().to(x.device)
    post = post.for_branch(model.head.inference)

    def step() -> Any:
        boxes, scores = fused.head.decode(fused(x))
        return post(boxes, scores, letterbox, orig_sizes)

    return step


@torch.no_grad()
def parity(ours: Detector, theirs: nn.Module, x: torch.Tensor) -> dict[str, float]:
    """Largest differences between our import and their module on ``x``: class scores and box
    coordinates (pixels), decoded, before NMS (of the one-to-many branch, their module's default)."""
    from detector.boxes import cxcywh_to_xyxy

    ours, theirs = ours.eval(), theirs.eval()
    with ours.head.running(("one2many",)):
        boxes, scores = ours.head.decode(ours(x), "one2many")
    out = theirs(x)
    decoded = (out[0] if isinstance(out, (tuple, list)) else out).float()  # [B, 4 + nc, A] cxcywh, scores
    their_boxes = cxcywh_to_xyxy(decoded[:, :4].transpose(1, 2))
    return {
        "max_abs_score_diff": float((scores - decoded[:, 4:].transpose(1, 2)).abs().max()),
        "max_abs_box_diff_px": float((boxes - their_boxes).abs().max()),
    }


def write_model_outputs(folder: Path, metrics: dict[str, Any], predictions: list[dict[str, Any]]) -> None:
    write_text_atomic(folder / "metrics.json", json.dumps(metrics, indent=2))
    write_text_atomic(folder / "predictions.json", json.dumps(predictions))


def slug(label: str, used: set[str]) -> str:
    """A folder name for a model: the file stem (or name), made unique."""
    path = Path(label)
    base = path.stem if path.suffix.lower() in {".pt", ".yaml", ".yml"} else path.name or label
    if path.suffix.lower() == ".pt" and path.parent.name == "weights" and path.parent.parent.name:
        base = f"{path.parent.parent.name}_{path.stem}"  # runs/train/exp/weights/best.pt -> exp_best
    base = re.sub(r"[^A-Za-z0-9_.-]+", "_", base) or "model"
    name, n = base, 1
    while name in used:
        n += 1
        name = f"{base}_{n}"
    used.add(name)
    return name
