"""Augmentation pipelines built from ``configs/augment/*.yaml`` with albumentations.

The training pipeline follows the YOLO recipe: a 4-image Mosaic on a ``2 imgsz`` canvas, random
affine of the canvas, its central ``imgsz`` crop (or, without mosaic, letterbox to ``imgsz`` and
random affine), colour jitter, flips (any further albumentations transforms may follow), optional
MixUp of two augmented samples. Validation is letterbox only. Every random draw comes from a
seed given per sample, so a sample is a pure function of (seed, epoch, index): the same
batches for the same seed, whatever the number of workers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import albumentations as A
import cv2
import numpy as np

FILL = 114  # letterbox / border grey


@dataclass
class Augmented:
    """An image at the network input size and its targets: ``boxes [N, 4]`` xyxy input pixels."""

    image: np.ndarray  # [imgsz, imgsz, 3] uint8 RGB
    boxes: np.ndarray  # [N, 4] float32
    classes: np.ndarray  # [N] int64


def letterbox(imgsz: int) -> list[A.BasicTransform]:
    """Resize the longer side to ``imgsz`` and pad, centred, to a square with grey."""
    return [
        A.LongestMaxSize(max_size=imgsz, interpolation=cv2.INTER_LINEAR),
        A.PadIfNeeded(imgsz, imgsz, position="center", border_mode=cv2.BORDER_CONSTANT, fill=FILL),
    ]


def letterbox_params(orig_size: tuple[int, int], loaded_size: tuple[int, int], imgsz: int) -> np.ndarray:
    """``[scale_x, scale_y, pad_x, pad_y]`` mapping original-image pixels to letterboxed input pixels
    (``x_in = x_orig * scale_x + pad_x``), for an image resized from ``orig_size`` to ``loaded_size``
    (both ``(h, w)``) and then padded by :func:`letterbox` (centred, top-left padding floored)."""
    (h0, w0), (h1, w1) = orig_size, loaded_size
    return np.array([w1 / w0, h1 / h0, (imgsz - w1) // 2, (imgsz - h1) // 2], dtype=np.float32)


class Pipeline:
    """``pipeline(image, boxes, classes, partners, seed) -> Augmented``.

    ``geometric`` then ``transforms`` run after the letterbox, in order. With ``mosaic`` (an
    ``A.Mosaic`` whose ``target_size`` is ``2 imgsz``), a sample is combined with the ``partners`` it
    is given (each a dict of image, bboxes, classes) whenever :attr:`mosaic_active`:
    ``geometric`` transforms the whole canvas and its central ``imgsz`` square is kept, so a
    zoom-out brings all four images into view (the YOLO recipe). :meth:`partners_needed` says how
    many partners to load.
    """

    def __init__(
        self,
        imgsz: int,
        transforms: Sequence[A.BasicTransform] = (),
        mosaic: A.Mosaic | None = None,
        geometric: Sequence[A.BasicTransform] = (),
        mixup: float = 0.0,
        min_visibility: float = 0.1,
        min_size: float = 2.0,
    ) -> None:
        self.imgsz = imgsz
        self.mixup = float(mixup)
        self.mosaic_active = mosaic is not None and mosaic.p > 0
        bbox_params = A.BboxParams(
            format="pascal_voc",
            label_fields=["classes"],
            min_visibility=min_visibility,  # fraction of a box that must stay inside the image
            min_width=min_size,
            min_height=min_size,
            clip=True,
            filter_invalid_bboxes=True,
            check_each_transform=False,  # filter once, at the end: boxes stay clipped to the image throughout
        )
        self._plain = A.Compose([*letterbox(imgsz), *geometric, *transforms], bbox_params=bbox_params, strict=True)
        self._mosaic = None
        if mosaic is not None:  # the canvas is 2 imgsz square: no letterbox, a central crop after the geometry
            if tuple(mosaic.target_size) != (2 * imgsz, 2 * imgsz):
                raise ValueError(f"mosaic target_size {tuple(mosaic.target_size)} must be ({2 * imgsz}, {2 * imgsz}), "
                                 "twice the imgsz")
            crop = A.CenterCrop(imgsz, imgsz)
            self._mosaic = A.Compose([mosaic, *geometric, crop, *transforms], bbox_params=bbox_params, strict=True)

    def partners_needed(self) -> int:
        return 3 if self.mosaic_active and self._mosaic is not None else 0

    def __call__(
        self,
        image: np.ndarray,
        boxes: np.ndarray,
        classes: np.ndarray,
        seed: int,
        partners: Sequence[Mapping[str, np.ndarray]] = (),
    ) -> Augmented:
        use_mosaic = self._mosaic is not None and self.mosaic_active and len(partners) > 0
        compose = self._mosaic if use_mosaic else self._plain
        compose.set_random_seed(seed)
        inputs: dict[str, Any] = {"image": image, "bboxes": boxes, "classes": classes}
        if use_mosaic:
            inputs["mosaic_metadata"] = list(partners)
        out = compose(**inputs)
        return Augmented(
            image=np.ascontiguousarray(out["image"]),
            boxes=np.asarray(out["bboxes"], dtype=np.float32).reshape(-1, 4),
            classes=np.asarray(out["classes"], dtype=np.int64).reshape(-1),
        )


def mix(a: Augmented, b: Augmented, rng: np.random.Generator) -> Augmented:
    """MixUp: blend two augmented samples with a Beta(32, 32) ratio and keep the boxes of both."""
    ratio = rng.beta(32.0, 32.0)
    image = (a.image.astype(np.float32) * ratio + b.image.astype(np.float32) * (1.0 - ratio)).round()
    return Augmented(
        image=image.clip(0, 255).astype(np.uint8),
        boxes=np.concatenate([a.boxes, b.boxes]),
        classes=np.concatenate([a.classes, b.classes]),
    )


def build_train_pipeline(augment: Mapping[str, Any], imgsz: int) -> Pipeline:
    """The training pipeline of an instantiated ``augment`` config.

    ``augment`` holds ``mosaic`` (an ``A.Mosaic`` or None), the named transforms ``affine``,
    ``color``, ``flipud``, ``fliplr`` (each an albumentations transform or None), ``extra`` (more
    transforms, applied last in their order), ``mixup`` (probability), ``min_visibility`` and
    ``min_size``. The dataset switches mosaic off for the close-mosaic epochs (``mosaic_active``).
    """
    named = [augment.get(k) for k in ("color", "flipud", "fliplr")]
    extra = list((augment.get("extra") or {}).values())
    transforms = [t for t in [*named, *extra] if t is not None]
    return Pipeline(
        imgsz,
        transforms,
        mosaic=augment.get("mosaic"),
        geometric=[augment["affine"]] if augment.get("affine") is not None else [],
        mixup=float(augment.get("mixup", 0.0)),
        min_visibility=float(augment.get("min_visibility", 0.1)),
        min_size=float(augment.get("min_size", 2.0)),
    )


def build_val_pipeline(imgsz: int) -> Pipeline:
    """Letterbox only."""
    return Pipeline(imgsz, min_visibility=0.0, min_size=0.0)
