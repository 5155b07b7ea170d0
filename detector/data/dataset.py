"""The detection dataset: a checked split (:class:`SplitIndex`) seen through an augmentation pipeline."""

from __future__ import annotations

from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset

from detector.data.index import SplitIndex
from detector.data.transforms import Augmented, Pipeline, mix
from detector.errors import DataError
from detector.images import decode_image
from detector.letterbox import fit_longest_side, fitted_size, letterbox_params


class Item(NamedTuple):
    """One sample as the dataset returns it; :func:`detector.data.loader.collate` batches them."""

    image: torch.Tensor  # [3, imgsz, imgsz] uint8 RGB (a channels-first view of the HWC array: collate copies it once)
    boxes: torch.Tensor  # [N, 4] float32 xyxy input pixels
    classes: torch.Tensor  # [N] int64
    image_id: int
    orig_size: tuple[int, int]  # (height, width) of the image file
    letterbox: torch.Tensor  # [4] scale_x, scale_y, pad_x, pad_y (meaningful without mosaic / affine)


def read_image(path: str) -> np.ndarray:
    """Decode an image file to ``[H, W, 3]`` uint8 RGB (grey and RGBA converted)."""
    image = decode_image(path)
    if image is None:
        raise DataError(f"cannot read {path} any more (it was readable when the split was checked)")
    return image


def epoch_order(length: int, seed: int, epoch: int) -> np.ndarray:
    """The shuffled order of one epoch, a function of ``(seed, epoch)`` only: the sampler visits
    samples in this order, and mosaic takes each sample's partners from its predecessors in it."""
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.randperm(length, generator=generator).numpy()


def load_image(path: str, imgsz: int) -> np.ndarray:
    """Decode an image for training or validation: shrunk to longer side ``imgsz`` when larger (area
    averaging, once), kept at its own size when smaller. The letterbox or the mosaic enlarges it later,
    in the one resampling that also places it."""
    return fit_longest_side(read_image(path), imgsz, enlarge=False)


# augment.mosaic_window=null: partners from the WINDOW_PER_BATCH x batch positions before a sample, at most
# WINDOW_MAX (the length of Ultralytics' buffer of the images it loaded last)
WINDOW_PER_BATCH = 8
WINDOW_MAX = 1000
MEMO_MAX = 256  # images a process keeps decoded for the partners of the samples after (memory: ~300 MB at 640)


def mosaic_window(window: int | None, batch_size: int) -> int:
    """The positions before a sample its mosaic partners are drawn from: ``window`` when given (0:
    none, the partners are the nearest samples of its batch), else ``min(8 x batch_size, 1000)``."""
    return min(WINDOW_PER_BATCH * max(1, batch_size), WINDOW_MAX) if window is None else window


def partner_positions(length: int, batch_size: int, count: int) -> np.ndarray:
    """``[length, count]``: for each position of an epoch's order, the positions of its mosaic
    partners: the ``count`` nearest other positions of its batch (earlier ones first), or, in a
    batch too small to hold them, the ``count`` positions before it (wrapping around the epoch)."""
    position = np.arange(length)
    start = position - position % batch_size
    size = np.minimum(batch_size, length - start)  # the last batch may be short
    before = position[:, None] - np.arange(1, count + 1)  # [length, count]
    if batch_size <= count:
        return before % max(length, 1)
    partners = before.copy()
    k = position - start  # index within the batch
    for j in range(count):  # the first ``count`` positions of a batch have fewer than ``count`` earlier ones
        rows = k == j
        nearest = [j - d for d in range(1, j + 1)] + [j + d for d in range(1, count - j + 1)]
        partners[rows] = start[rows, None] + np.array(nearest)
    small = size <= count  # a batch too short to hold ``count`` others: fall back to predecessors
    partners[small] = before[small] % length
    return partners


class ImageCache:
    """Decoded images of a split (see :func:`load_image`) in one contiguous uint8 buffer (no
    per-image Python objects, so forked loader workers share it without copying)."""

    def __init__(self, index: SplitIndex, imgsz: int, workers: int = 4) -> None:
        def load(i: int) -> np.ndarray:
            return load_image(index.path(i), imgsz)

        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            images = list(pool.map(load, range(len(index))))
        self.shapes = np.array([im.shape for im in images], dtype=np.int64).reshape(-1, 3)
        self.offsets = np.concatenate([[0], np.cumsum(self.shapes.prod(1))]).astype(np.int64)
        self.buffer = np.concatenate([im.reshape(-1) for im in images]) if images else np.zeros(0, np.uint8)

    @property
    def nbytes(self) -> int:
        return int(self.buffer.nbytes)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.buffer[self.offsets[i] : self.offsets[i + 1]].reshape(self.shapes[i])


class DetectionDataset(Dataset[Item]):
    """Samples of one split at ``imgsz``, augmented by ``pipeline``.

    Every random draw of sample ``i`` in epoch ``e`` comes from ``default_rng([seed, e, i])``, so
    the data are the same for the same seed whatever the number of workers, and a resumed run
    sees exactly the batches it would have seen. Crowd regions are not training targets.
    ``close_mosaic_epoch`` is the first epoch trained without mosaic (``None``: never).

    Mosaic partners of sample ``i`` are its neighbours in the epoch's order (:func:`epoch_order`)
    within its batch of ``batch_size`` (``partner_window=0``, :func:`partner_positions`; the loader
    sets the batch size): the worker that makes the batch loads them anyway, so a small per-process
    memo of loaded images (``recent`` entries) saves their decoding and every image is decoded about
    once per epoch. With ``partner_window`` N > 0 they are drawn instead at random from the N
    positions before the sample, with ``None`` from ``min(8 x batch_size, 1000)`` of them
    (:func:`mosaic_window`), as Ultralytics draws them from its buffer of recently loaded images:
    more distinct images per batch, and the memo then holds as many images as the window (at most
    ``MEMO_MAX``), but partners another worker loaded are decoded again.
    """

    def __init__(
        self,
        index: SplitIndex,
        pipeline: Pipeline,
        imgsz: int,
        seed: int = 0,
        cache_images: bool = False,
        close_mosaic_epoch: int | None = None,
        cache_workers: int = 4,
        recent: int = 16,
        batch_size: int = 1,
        partner_window: int | None = 0,
    ) -> None:
        self.index = index
        self.pipeline = pipeline
        self.imgsz = imgsz
        self.seed = seed
        self.close_mosaic_epoch = close_mosaic_epoch
        self._mosaic_configured = pipeline.mosaic_active
        self.cache = ImageCache(index, imgsz, cache_workers) if cache_images else None
        self._recent: OrderedDict[int, np.ndarray] = OrderedDict()
        self._memo_min = recent
        self.batch_size = max(1, int(batch_size))
        self.partner_window = None if partner_window is None else int(partner_window)
        if self.partner_window is not None and self.partner_window < 0:
            raise ValueError(f"augment.mosaic_window must be >= 0 (or null), got {partner_window}")
        self.epoch = 0
        self.set_epoch(0)

    def __len__(self) -> int:
        return len(self.index)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose random draws ``__getitem__`` makes (and whether mosaic is on)."""
        self.epoch = int(epoch)
        closed = self.close_mosaic_epoch is not None and self.epoch >= self.close_mosaic_epoch
        self.pipeline.mosaic_active = self._mosaic_configured and not closed
        if self.pipeline.partners_needed():
            self._order = epoch_order(len(self), self.seed, self.epoch)
            self._position = np.empty_like(self._order)
            self._position[self._order] = np.arange(len(self._order))
            self._partners = partner_positions(len(self), self.batch_size, self.pipeline.partners_needed())
        needed = self.cache is None and self.pipeline.partners_needed() > 0
        self._recent_size = max(self._memo_min, min(self.window, MEMO_MAX)) if needed else 0
        while len(self._recent) > self._recent_size:
            self._recent.popitem(last=False)

    @property
    def window(self) -> int:
        """The positions before a sample its mosaic partners come from (0: from its batch)."""
        return mosaic_window(self.partner_window, self.batch_size)

    def set_batch_size(self, batch_size: int) -> None:
        """The batches the sampler groups: mosaic partners are taken within them (or, with
        ``partner_window=None``, from the 8 before; see the class)."""
        self.batch_size = max(1, int(batch_size))
        self.set_epoch(self.epoch)

    def _image(self, i: int) -> np.ndarray:
        """Image ``i`` as :func:`load_image` gives it; from the RAM cache or the memo of recently
        loaded images when there. Callers must not modify it."""
        if self.cache is not None:
            return self.cache[i]
        image = self._recent.get(i)
        if image is None:
            image = load_image(self.index.path(i), self.imgsz)
            if self._recent_size:
                self._recent[i] = image
                if len(self._recent) > self._recent_size:
                    self._recent.popitem(last=False)
        else:
            self._recent.move_to_end(i)
        return image

    def load(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Image ``i`` (see :func:`load_image`) and its (non-crowd) boxes in its pixels."""
        image = self._image(i)
        boxes, classes = self.index.objects(i)
        h0, w0 = self.index.sizes[i]
        h1, w1 = image.shape[:2]
        scale = np.array([w1 / w0, h1 / h0, w1 / w0, h1 / h0], dtype=np.float32)
        return image, boxes * scale, classes

    def augment(self, i: int, rng: np.random.Generator) -> Augmented:
        image, boxes, classes = self.load(i)

        def partners() -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
            return [self.load(int(j)) for j in self._order[self._partner_positions(i)]]

        return self.pipeline(image, boxes, classes, seed=int(rng.integers(2**31)), partners=partners)

    def _partner_positions(self, i: int) -> np.ndarray:
        """Positions in the epoch's order of sample ``i``'s mosaic partners: drawn from the
        :attr:`window` positions before it, wrapping around the epoch, from a random stream of their
        own (the sample's other draws stay as they were), or (a window of 0) the nearest ones of its batch."""
        position, window = self._position[i], self.window
        if window == 0:
            return self._partners[position]
        count = self.pipeline.partners_needed()
        rng = np.random.default_rng([self.seed, self.epoch, i, 1])
        window = min(window, len(self) - 1)
        return (position - 1 - rng.choice(window, size=count, replace=window < count)) % len(self)

    def __getitem__(self, i: int) -> Item:
        rng = np.random.default_rng([self.seed, self.epoch, i])
        sample = self.augment(i, rng)
        if self.pipeline.mixup > 0 and rng.random() < self.pipeline.mixup:
            sample = mix(sample, self.augment(int(rng.integers(0, len(self))), rng), rng)
        h0, w0 = (int(v) for v in self.index.sizes[i])
        return Item(
            image=torch.from_numpy(sample.image).permute(2, 0, 1),
            boxes=torch.from_numpy(sample.boxes),
            classes=torch.from_numpy(sample.classes),
            image_id=int(self.index.image_ids[i]),
            orig_size=(h0, w0),
            letterbox=torch.from_numpy(letterbox_params((h0, w0), fitted_size(h0, w0, self.imgsz), self.imgsz)),
        )
