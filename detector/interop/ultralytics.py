"""The adapter to Ultralytics' runtime: every call into Ultralytics goes through this module.

Their ``DetectionModel`` from a YAML or from safely read weights, their training loader, their
validator, predictor, training step and trainer, their device strings and CPU thread count.
Reading their checkpoints needs no Ultralytics install (:mod:`detector.interop.ultralytics_weights`).
This is the only module of the package that imports ``ultralytics``, and only inside its functions:
importing it imports nothing from Ultralytics (whose import sets process-wide state, e.g.
``cv2.setNumThreads(0)`` and ``OMP_NUM_THREADS``). Install it with ``pip install -e ".[compare]"``;
set ``YOLO_OFFLINE=1`` at the entry point to keep it offline. (One module, about 330 lines: the
design keeps every Ultralytics call in one place.)
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from detector.boxes import cxcywh_to_xyxy, xyxy_to_cxcywh
from detector.data.sources import YoloSource
from detector.datafiles import dataset_names
from detector.eval.postprocess import PostProcess
from detector.interop.ultralytics_weights import UltralyticsCheckpoint, copy_by_position
from detector.train.optim import parameter_groups
from detector.types import Targets

# Ultralytics training hyper-parameters equivalent to configs/augment/default.yaml.
TRAIN_AUGMENT: dict[str, Any] = {
    "mosaic": 1.0,
    "scale": 0.5,  # gain in [0.5, 1.5]            (ours: Affine scale [0.5, 1.5])
    "translate": 0.1,  # +-10 % of imgsz            (ours: translate_percent [-0.1, 0.1], of imgsz with mosaic too)
    "degrees": 0.0,
    "shear": 0.0,
    "perspective": 0.0,
    "hsv_h": 0.015,  # hue shift +-0.015 of a circle  (ours: HSVJitter hue [-0.015, 0.015])
    "hsv_s": 0.7,  # gain in [0.3, 1.7]              (ours: saturation [0.3, 1.7])
    "hsv_v": 0.4,  # gain in [0.6, 1.4]              (ours: value [0.6, 1.4])
    "fliplr": 0.5,
    "flipud": 0.0,
    "mixup": 0.0,
    "cutmix": 0.0,
    "copy_paste": 0.0,
    "bgr": 0.0,
    "augmentations": [],  # no extra albumentations (Ultralytics' default adds Blur, CLAHE, ... at p=0.01)
}


def require() -> ModuleType:
    """The ``ultralytics`` package; ImportError naming the install command when it is missing."""
    try:
        import ultralytics
    except ImportError as err:
        raise ImportError(
            'ultralytics is not installed; it is needed for comparisons: pip install -e ".[compare]"'
        ) from err
    return ultralytics


def yolo_class() -> type:
    """Ultralytics' ``YOLO`` (their model, export and predictor entry), imported here only."""
    require()
    from ultralytics import YOLO

    return YOLO


def version() -> str:
    return str(require().__version__)


def device_string(device: torch.device) -> str:
    """A torch device in Ultralytics' spelling: ``cpu``, ``mps``, or the CUDA index (``0``, ``1``, ...)."""
    if device.type == "cuda":
        return str(device.index or 0)
    return device.type


def cpu_threads() -> int:
    """The torch CPU thread count Ultralytics sets whenever it selects a CPU device."""
    require()
    from ultralytics.utils import NUM_THREADS

    return int(NUM_THREADS)


# --------------------------------------------------------------------------- their models


def ultralytics_model(checkpoint: UltralyticsCheckpoint) -> nn.Module:
    """Ultralytics' own ``DetectionModel`` for the checkpoint: built from its yaml by Ultralytics and
    given the safely read tensors (Ultralytics' loader, which unpickles the file, is never used)."""
    require()
    from ultralytics.nn.tasks import DetectionModel

    model = DetectionModel(copy.deepcopy(checkpoint.yaml), nc=checkpoint.num_classes, verbose=False)
    model.load_state_dict(checkpoint.state_dict)
    model.names = dict(enumerate(checkpoint.names))
    return model.eval()


def model_from_yaml(
    name: str, num_classes: int, weights: dict[str, torch.Tensor] | None = None, names: Sequence[str] | None = None
) -> nn.Module:
    """Ultralytics' ``DetectionModel`` built offline from its ``<name>.yaml`` (their initialisation,
    drawn from the global torch RNG); ``weights`` (any state dict that lines up one to one, ours
    included) are copied onto it by position. FileNotFoundError when they have no such yaml."""
    require()
    from ultralytics.nn.tasks import DetectionModel

    model = DetectionModel(f"{name}.yaml", nc=num_classes, verbose=False)
    if weights is not None:
        copy_by_position(model, weights)
    if names is not None:
        model.names = dict(enumerate(names))
    return model


# --------------------------------------------------------------------------- their loader


def _train_images(data_yaml: Path) -> tuple[Path, list[str], dict[int, str]]:
    """A data.yaml's root, its 'train' entries (folders or .txt lists) as absolute paths, and its names.

    Paths resolve as :class:`detector.data.sources.YoloSource` resolves them (``path`` relative to
    the yaml's folder), so both libraries read the same images. Ultralytics' ``check_det_dataset``
    is not used: it calls ``check_font``, which reaches for the network even with ``YOLO_OFFLINE=1``.
    """
    names = dataset_names("yolo", str(data_yaml))
    source = YoloSource(names, len(names), file=str(data_yaml))
    return source.root, [str(entry) for entry in source.entries("train")], dict(enumerate(names))


def ultralytics_train_loader(
    data_yaml: str | Path, imgsz: int, batch: int, workers: int, seed: int = 0, mosaic: bool = True
) -> Iterable[dict[str, Any]]:
    """Ultralytics' YOLO training dataset and dataloader for the 'train' split of ``data_yaml``.

    Built from Ultralytics' public pieces (``get_cfg``, ``build_yolo_dataset``,
    ``build_dataloader``) with the augmentation of ``configs/augment/default.yaml`` (see
    :data:`TRAIN_AUGMENT`), no image cache, square (not rectangular) batches.

    Returns Ultralytics' ``InfiniteDataLoader``: each ``iter()`` yields one epoch of batches
    (dicts; ``batch["img"]`` is ``[B, 3, imgsz, imgsz]`` uint8) from worker processes that persist
    across epochs; its ``reset()`` shuts them down. The shuffling order and the workers' random
    draws are seeded from ``seed`` (the global torch RNG is left as it was); with ``workers=0`` the
    augmentation draws from the caller's global ``random`` / ``numpy.random`` state instead.
    Ultralytics writes its label cache (``labels/<split>.cache``) beside the labels. ``mosaic=False``:
    the dataset as their trainer closes it for the last ``close_mosaic`` epochs.

    Raises ImportError (naming ``pip install -e ".[compare]"``) when ultralytics is missing and
    FileNotFoundError when ``data_yaml`` does not exist.
    """
    require()
    from ultralytics.cfg import get_cfg
    from ultralytics.data.build import build_dataloader, build_yolo_dataset

    data_yaml = Path(data_yaml).expanduser()
    if not data_yaml.is_file():
        raise FileNotFoundError(f"data.yaml not found: {data_yaml}")
    root, images, names = _train_images(data_yaml)
    data = {"path": str(root), "train": images, "names": names, "nc": len(names), "channels": 3}
    overrides = {
        **{"task": "detect", "mode": "train", "data": str(data_yaml), "imgsz": imgsz, "batch": batch},
        **{"workers": workers, "seed": seed, "cache": False, "rect": False, "fraction": 1.0},
        **{"single_cls": False, "plots": False},
        **TRAIN_AUGMENT,
    }
    cfg = get_cfg(overrides=overrides)
    dataset = build_yolo_dataset(cfg, images, batch, data, mode="train", rect=False, stride=32)
    if not mosaic:
        dataset.close_mosaic(hyp=cfg)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    # build_dataloader seeds its loader generator from torch.initial_seed(): set it for the call only.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_dataloader(dataset, batch, workers, shuffle=True, rank=-1, device=device)


class TrainingBatch(NamedTuple):
    """What our training loop reads of a batch."""

    images: torch.Tensor  # [B, 3, H, W] uint8 RGB
    targets: Targets


class UltralyticsTrainingBatches:
    """Ultralytics' training loader (:func:`ultralytics_train_loader`) seen as our training loop's
    loader: each ``iter()`` yields one epoch of ``(images, targets)`` batches (uint8 RGB images,
    :class:`Targets` in input pixels), and ``set_epoch`` closes mosaic from epoch ``close_epoch`` on
    as their trainer does (``close_mosaic`` with their augmentation settings, then a fresh set of
    workers). The loop finds ``set_epoch`` through ``sampler`` and ``dataset``, both this object; the
    checkpointer saves ``generator``, their loader's shuffling generator. A run cannot resume
    mid-epoch on it (their sampler cannot skip the batches already seen).

    For the head-to-head's loader swap (``scripts/compare.py mode=train recipe.our_loader=ultralytics``):
    our trainer, their data, to tell a difference in the data from one in the training loop."""

    def __init__(
        self, data_yaml: str | Path, imgsz: int, batch: int, workers: int, seed: int, close_epoch: int | None
    ) -> None:
        self.loader: Any = ultralytics_train_loader(data_yaml, imgsz, batch, workers, seed)
        self.close_epoch = close_epoch
        self.closed = False
        self.sampler = self.dataset = self
        self.generator = self.loader.generator
        self.batch_size = batch

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        if start:
            raise RuntimeError("a run on Ultralytics' training loader cannot resume mid-epoch")
        if self.close_epoch is not None and epoch >= self.close_epoch and not self.closed:
            from ultralytics.cfg import get_cfg

            self.loader.dataset.close_mosaic(hyp=get_cfg(overrides=dict(TRAIN_AUGMENT)))
            self.loader.reset()
            self.closed = True

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterable[TrainingBatch]:
        for batch in self.loader:
            yield TrainingBatch(*batch_targets(batch))


# --------------------------------------------------------------------------- validation and prediction


def validate(
    model: nn.Module,
    data_yaml: str | Path,
    split: str,
    imgsz: int,
    batch: int,
    post: PostProcess,
    device: torch.device,
    save_dir: Path,
    rect: bool = False,
    workers: int = 0,
) -> dict[str, Any]:
    """Ultralytics' own ``DetectionValidator`` (what ``YOLO.val`` runs) on ``model`` with our conf,
    IoU and max_det, plots and files off. It fuses ``model`` in place (pass a copy to keep it).
    ``rect=False`` letterboxes every image to a square ``imgsz`` as our evaluator does (``YOLO.val``
    defaults to rectangular batches); on a CPU it loads without workers whatever ``workers`` says.
    ``post.end2end``: an end-to-end model (YOLO26) scored by its one-to-one branch (their ``nms=False``),
    else by its one-to-many branch and their NMS."""
    require()
    from ultralytics.models.yolo.detect import DetectionValidator

    args = {
        **{"task": "detect", "mode": "val", "data": str(data_yaml), "split": split, "imgsz": imgsz},
        **{"batch": batch, "workers": workers, "conf": post.conf, "iou": post.iou, "max_det": post.max_det},
        **{"device": device_string(device), "rect": rect, "plots": False, "save_json": False},
        **{"save_txt": False, "verbose": False},
        **({"nms": False} if post.end2end else {}),
    }
    validator = DetectionValidator(save_dir=Path(save_dir), args=args)
    validator(model=model)
    if Path(save_dir).is_dir() and not any(Path(save_dir).iterdir()):
        Path(save_dir).rmdir()  # it makes the folder even when it has nothing to write
    box = validator.metrics.box
    return {
        "mAP50-95": float(box.map),
        "mAP50": float(box.map50),
        "images": int(getattr(validator, "seen", 0)),
        "speed_ms_per_image": {k: float(v) for k, v in dict(validator.speed).items()},
        "rect": rect,
    }


def predictor(
    arch: str, model: nn.Module, device: torch.device, imgsz: int, post: PostProcess, save_dir: Path
) -> Callable[[np.ndarray], Any]:
    """``image (BGR) -> Results`` through ``YOLO.predict`` (a ``YOLO`` of ``<arch>.yaml`` carrying
    ``model``) with our conf, IoU, max_det and agnostic setting (``post.end2end``: the one-to-one
    branch, their ``nms=False``); its predictor fuses the model on first use and writes nothing."""
    require()
    from ultralytics import YOLO

    yolo = YOLO(f"{arch}.yaml", task="detect")
    yolo.model = model
    kwargs = {
        **{"imgsz": imgsz, "conf": post.conf, "iou": post.iou, "max_det": post.max_det},
        **{"agnostic_nms": post.agnostic, "device": device_string(device), "verbose": False, "save": False},
        **{"project": str(save_dir.parent), "name": save_dir.name, "exist_ok": True},
        **({"nms": False} if post.end2end else {}),  # an end-to-end model's one-to-one branch (YOLO26)
    }
    return lambda image: yolo.predict(image, **kwargs)[0]


def inference_step(
    model: nn.Module, x: torch.Tensor, post: PostProcess, orig_size: tuple[int, int]
) -> Callable[[], Any]:
    """Their inference step on a fused copy of ``model``: forward, their NMS (every class above conf
    a candidate, as their validator calls it) and their box rescaling, for ``x`` ``[1, 3, H, W]``.
    ``post.end2end``: an end-to-end model's one-to-one branch, whose top-k their NMS function only
    thresholds."""
    require()
    try:
        from ultralytics.utils.nms import non_max_suppression
    except ImportError:  # older releases keep it in ops
        from ultralytics.utils.ops import non_max_suppression
    from ultralytics.utils.ops import scale_boxes

    unfused = copy.deepcopy(model).float()
    if post.end2end:
        unfused.model[-1]._end2end = True  # their switch to the one-to-one branch (fuse then drops the other)
        unfused.model[-1].max_det = post.max_det
    fused = unfused.fuse(verbose=False).eval().to(x.device)

    def step() -> Any:
        out = non_max_suppression(
            fused(x), post.conf, post.iou, multi_label=True, max_det=post.max_det, end2end=post.end2end
        )
        return [scale_boxes(x.shape[2:], d[:, :4], orig_size) for d in out]

    return step


# --------------------------------------------------------------------------- training


def batch_dict(images: torch.Tensor, targets: Targets) -> dict[str, torch.Tensor]:
    """A batch in the keys and formats of Ultralytics' loader (normalised cx, cy, w, h)."""
    h, w = images.shape[-2:]
    scale = torch.tensor([w, h, w, h], dtype=torch.float32)
    return {
        "img": images,
        "batch_idx": targets.batch_index.float(),
        "cls": targets.classes.float().view(-1, 1),
        "bboxes": xyxy_to_cxcywh(targets.boxes) / scale,
    }


def train_step(
    model: nn.Module,
    images: torch.Tensor,  # [B, 3, H, W] uint8, on the CPU
    targets: Targets,
    device: torch.device,
    make_optimizer: Callable[..., torch.optim.Optimizer],
    weight_decay: float,
    gains: dict[str, float],
    dtype: torch.dtype | None = None,
    clip: float = 10.0,
) -> Callable[[], None]:
    """One optimizer step as Ultralytics' trainer makes it: the batch to the device and images to
    [0, 1] (its ``preprocess_batch``), the model's own loss (``v8DetectionLoss``, or ``E2ELoss`` for an
    end-to-end head, with its hyper-parameters from ``get_cfg``) under autocast to ``dtype`` if given (its trainer's
    ``amp``: fp16, or bf16 with ``amp="bf16"``), ``loss.sum()``, backward through a GradScaler
    (enabled for fp16), clipping at ``clip``, the optimizer step and its ``ModelEMA`` update. The
    optimizer is ``make_optimizer`` over our parameter groups (weights with decay, norms and biases
    without; Ultralytics' trainer splits them the same way)."""
    require()
    from ultralytics.cfg import get_cfg
    from ultralytics.utils.torch_utils import ModelEMA

    model = model.to(device).train()
    model.args = get_cfg(overrides=dict(gains))  # the trainer attaches its hyper-parameters like this
    optimizer = make_optimizer(params=parameter_groups(model, weight_decay))
    ema = ModelEMA(model)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    cpu_batch = batch_dict(images, targets)

    def step() -> None:
        batch = {k: v.to(device, non_blocking=device.type != "cpu") for k, v in cpu_batch.items()}
        batch["img"] = batch["img"].float() / 255
        with torch.autocast(device.type, dtype=dtype) if dtype else nullcontext():
            loss, _ = model(batch)
        scaler.scale(loss.sum()).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=clip)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad()
        ema.update(model)

    return step


def train(
    model_yaml: str, args: dict[str, Any], epoch_start: Callable[[], None], epoch_end: Callable[[int], None]
) -> tuple[Path, int]:
    """``YOLO(model_yaml).train(**args)`` (a YAML name such as ``yolov8n.yaml``: built offline, random
    weights). ``epoch_start()`` and ``epoch_end(images in the epoch's dataset)`` are called around each
    training epoch (validation excluded). Returns their run directory and the loader workers their
    trainer used (it sets 0 on a CPU, whatever ``workers`` says)."""
    require()
    from ultralytics import YOLO

    model = YOLO(model_yaml, task="detect")
    model.add_callback("on_train_epoch_start", lambda trainer: epoch_start())
    model.add_callback("on_train_epoch_end", lambda trainer: epoch_end(len(trainer.train_loader.dataset)))
    with trackers_off():
        model.train(**args)
    return Path(model.trainer.save_dir), int(model.trainer.args.workers)


# Their experiment-tracker integrations, each a key of their settings: a trainer built while one is
# true logs to that tracker (MLflow, installed with our `track` extra, writes ./mlflow.db and ./mlruns).
TRACKERS = ("clearml", "comet", "dvc", "mlflow", "raytune", "tensorboard", "wandb")


@contextmanager
def trackers_off() -> Iterator[None]:
    """Their trainers built inside the block log to no experiment tracker, as ours in a comparison
    log to none: the tracker keys of their ``SETTINGS`` read false, in memory only (their settings
    file, the user's choice for their own runs, is neither read back nor written), restored after."""
    require()
    from ultralytics.utils import SETTINGS

    saved = {key: SETTINGS[key] for key in TRACKERS if key in SETTINGS}
    dict.update(SETTINGS, dict.fromkeys(saved, False))  # dict's own update: theirs saves the file
    try:
        yield
    finally:
        dict.update(SETTINGS, saved)


# --------------------------------------------------------------------------- training diagnostics


def assigner_view(module: nn.Module, args: tuple, output: Any) -> tuple[torch.Tensor, ...] | None:
    """For a forward hook on their ``TaskAlignedAssigner``: (predicted boxes ``[B, A, 4]`` xyxy px,
    ground-truth boxes ``[B, G, 4]`` xyxy px, ground-truth mask ``[B, G]``, foreground ``[B, A]``,
    ground-truth index of each point ``[B, A]``); None for any other module."""
    if type(module).__name__ != "TaskAlignedAssigner" or not type(module).__module__.startswith("ultralytics."):
        return None
    _, pred_boxes, _, _, gt_boxes, gt_mask = args[:6]
    _, _, _, foreground, gt_index = output
    return pred_boxes, gt_boxes, gt_mask.reshape(gt_boxes.shape[:2]).bool(), foreground.bool(), gt_index


def ema_decay(updates: int) -> float:
    """The decay their trainer's ``ModelEMA`` (its defaults) applies at update number ``updates``."""
    require()
    from ultralytics.utils.torch_utils import ModelEMA

    return float(ModelEMA(nn.Linear(1, 1)).decay(updates))


def batch_targets(batch: dict[str, Any]) -> tuple[torch.Tensor, Targets]:
    """One batch of their training loader as ours: images ``[B, 3, H, W]`` uint8 RGB and
    :class:`Targets` in input pixels (the inverse of :func:`batch_dict`)."""
    images = batch["img"]
    h, w = images.shape[-2:]
    scale = torch.tensor([w, h, w, h], dtype=torch.float32)
    boxes = cxcywh_to_xyxy(batch["bboxes"].float() * scale)
    return images, Targets(batch["batch_idx"].long().flatten(), boxes, batch["cls"].long().flatten())


def record_loads(dataset: Any) -> list[int]:
    """Make their training dataset append the index of every image it loads (a sample's own and its
    mosaic partners', through ``load_image``) to the returned list."""
    loads: list[int] = []
    original = dataset.load_image

    def load_image(i: int, *args: Any, **kwargs: Any) -> Any:
        loads.append(int(i))
        return original(i, *args, **kwargs)

    dataset.load_image = load_image
    return loads
