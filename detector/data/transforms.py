"""Augmentation pipelines built from ``configs/augment/*.yaml`` with albumentations.

The training pipeline follows the YOLO recipe: a 4-image mosaic on a ``2 imgsz`` canvas, random
affine of the canvas, its central ``imgsz`` crop (one resampling, :mod:`detector.data.mosaic`; or,
without mosaic, letterbox to ``imgsz`` and random affine), HSV jitter, flips (any further
albumentations transforms may follow), optional MixUp of two augmented samples. Validation is
letterbox only. Every random draw comes from a seed given per sample, so a sample is a pure
function of (seed, epoch, index): the same batches for the same seed, whatever the number of
workers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import albumentations as A
import cv2
import numpy as np

from detector.data.mosaic import Cell, Mosaic, check_affine, draw_affine
from detector.letterbox import FILL


@dataclass
class Augmented:
    """An image at the network input size and its targets: ``boxes [N, 4]`` xyxy input pixels."""

    image: np.ndarray  # [imgsz, imgsz, 3] uint8 RGB
    boxes: np.ndarray  # [N, 4] float32
    classes: np.ndarray  # [N] int64


def letterbox_transforms(imgsz: int) -> list[A.BasicTransform]:
    """The letterbox of :mod:`detector.letterbox` as albumentations transforms, so that boxes follow:
    the longer side resized to ``imgsz``, then centred on a ``FILL`` square (top-left padding rounded down)."""
    return [
        A.LongestMaxSize(max_size=imgsz, interpolation=cv2.INTER_LINEAR),
        A.PadIfNeeded(imgsz, imgsz, position="center", border_mode=cv2.BORDER_CONSTANT, fill=FILL),
    ]


Partners = Callable[[], Sequence[Cell]]  # loads the three other images of a mosaic, when one is drawn


class Pipeline:
    """``pipeline(image, boxes, classes, seed, partners) -> Augmented``.

    Without mosaic: letterbox to ``imgsz``, then ``geometric`` (at most one ``albumentations.Affine``),
    then ``transforms``, in one albumentations ``Compose``. With ``mosaic`` (while
    :attr:`mosaic_active`, with the mosaic's probability ``p``), the sample and the three
    ``partners()`` images are combined on a ``2 imgsz`` canvas that the affine transforms and whose
    central ``imgsz`` square is kept, then ``transforms`` follow. ``mosaic`` is either our
    :class:`~detector.data.mosaic.Mosaic` (one resampling straight into the output: the default) or
    an ``albumentations.Mosaic`` with ``target_size`` ``2 imgsz`` (the canvas painted and warped whole,
    then cropped by ``albumentations.CenterCrop``: slower, the same recipe).
    """

    def __init__(
        self,
        imgsz: int,
        transforms: Sequence[A.BasicTransform] = (),
        mosaic: Mosaic | A.Mosaic | None = None,
        geometric: Sequence[A.BasicTransform] = (),
        mixup: float = 0.0,
        *,
        min_visibility: float,  # the augment config's values: no defaults here (one home, the schema)
        min_size: float,
    ) -> None:
        self.imgsz = imgsz
        self.mixup = float(mixup)
        self.min_visibility = float(min_visibility)
        self.min_size = float(min_size)
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
        self._plain = A.Compose(
            [*letterbox_transforms(imgsz), *geometric, *transforms], bbox_params=bbox_params, strict=True
        )
        self._after = A.Compose(list(transforms), bbox_params=bbox_params, strict=True) if transforms else None
        self.mosaic = mosaic
        self.mosaic_p = 0.0 if mosaic is None else float(mosaic.p)
        self.mosaic_active = self.mosaic_p > 0
        self._affine: A.Affine | None = None
        self._canvas: A.Compose | None = None
        if isinstance(mosaic, Mosaic):
            if len(geometric) > 1:
                raise ValueError("with the mosaic, geometric takes at most one albumentations.Affine")
            self._affine = geometric[0] if geometric else None
            check_affine(self._affine)
        elif isinstance(
            mosaic, A.Mosaic
        ):  # the canvas is 2 imgsz square: no letterbox, a central crop after the geometry
            if tuple(mosaic.target_size) != (2 * imgsz, 2 * imgsz):
                raise ValueError(
                    f"mosaic target_size {tuple(mosaic.target_size)} must be ({2 * imgsz}, {2 * imgsz}), "
                    "twice the imgsz"
                )
            mosaic.p = 1.0  # drawn here, per sample, as for our Mosaic
            crop = A.CenterCrop(imgsz, imgsz)
            self._canvas = A.Compose([mosaic, *geometric, crop, *transforms], bbox_params=bbox_params, strict=True)
        elif mosaic is not None:
            raise ValueError(
                f"augment.mosaic must be detector.data.mosaic.Mosaic or albumentations.Mosaic, "
                f"got {type(mosaic).__name__}"
            )

    def partners_needed(self) -> int:
        return 3 if self.mosaic_active else 0

    def __call__(
        self,
        image: np.ndarray,
        boxes: np.ndarray,
        classes: np.ndarray,
        seed: int,
        partners: Partners = tuple,
    ) -> Augmented:
        rng = np.random.default_rng(seed)
        if self.mosaic_active and rng.random() < self.mosaic_p:
            cells = [(image, boxes, classes), *partners()]
            if isinstance(self.mosaic, Mosaic):
                affine = draw_affine(self._affine, self.imgsz, rng)
                image, boxes, classes = self.mosaic(cells, self.imgsz, affine, rng, self.min_visibility, self.min_size)
                if self._after is None:
                    return Augmented(image, boxes, classes)
                return self._run(self._after, seed, image=image, bboxes=boxes, classes=classes)
            others = [{"image": im, "bboxes": b, "classes": c} for im, b, c in cells[1:]]
            return self._run(self._canvas, seed, image=image, bboxes=boxes, classes=classes, mosaic_metadata=others)
        return self._run(self._plain, seed, image=image, bboxes=boxes, classes=classes)

    @staticmethod
    def _run(compose: A.Compose, seed: int, **inputs: Any) -> Augmented:
        compose.set_random_seed(seed)
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

    ``augment`` holds ``mosaic`` (a :class:`Mosaic`, an ``A.Mosaic`` or None), the named transforms ``affine``,
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
        mixup=float(augment["mixup"]),
        min_visibility=float(augment["min_visibility"]),
        min_size=float(augment["min_size"]),
    )


def build_val_pipeline(imgsz: int) -> Pipeline:
    """Letterbox only."""
    return Pipeline(imgsz, min_visibility=0.0, min_size=0.0)
