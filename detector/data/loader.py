"""Batches: a seeded, epoch-aware sampler (or ``DistributedSampler`` under torchrun) and collation."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence

import cv2
import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler, Sampler, get_worker_info

from detector.data.dataset import DetectionDataset, Item, epoch_order
from detector.types import Batch, Targets


class EpochSampler(Sampler[int]):
    """The permutation of :func:`epoch_order` per epoch: reproducible and resumable."""

    def __init__(self, length: int, shuffle: bool = True, seed: int = 0) -> None:
        self.length = length
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0
        self.start = 0  # samples of this epoch already seen (a run resumed mid-epoch skips them)

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch = int(epoch)
        self.start = int(start)

    def __iter__(self) -> Iterator[int]:
        order = epoch_order(self.length, self.seed, self.epoch).tolist() if self.shuffle else list(range(self.length))
        return iter(order[self.start :])

    def __len__(self) -> int:
        return self.length - self.start


def stack_images(images: Sequence[torch.Tensor]) -> torch.Tensor:
    """``[B, C, H, W]`` contiguous, in one copy per image. In a loader worker the batch is made in
    shared memory, where the loader would otherwise copy it to send it (as torch's default_collate
    does)."""
    shape = (len(images), *images[0].shape)
    if get_worker_info() is None:
        return torch.stack(list(images))
    storage = torch.UntypedStorage._new_shared(math.prod(shape) * images[0].element_size())
    out = torch.empty(0, dtype=images[0].dtype).set_(storage).view(shape)
    return torch.stack(list(images), out=out)


def collate(items: Sequence[Item]) -> Batch:
    """Stack images; flatten targets with the index of the image each box belongs to."""
    counts = [len(item.classes) for item in items]
    return Batch(
        images=stack_images([item.image for item in items]),
        targets=Targets(
            batch_index=torch.repeat_interleave(torch.arange(len(items)), torch.tensor(counts, dtype=torch.long)),
            boxes=torch.cat([item.boxes for item in items]).reshape(-1, 4),
            classes=torch.cat([item.classes for item in items]).reshape(-1),
        ),
        image_ids=torch.tensor([item.image_id for item in items], dtype=torch.long),
        orig_sizes=torch.tensor([item.orig_size for item in items], dtype=torch.long),
        letterbox=torch.stack([item.letterbox for item in items]),
    )


def seed_worker(worker_id: int) -> None:
    """Seed the global RNGs of a loader worker from the seed torch gave it (for any code that
    uses them; the dataset itself draws from per-sample generators)."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def build_loader(
    dataset: DetectionDataset,
    batch_size: int,
    shuffle: bool,
    workers: int = 4,
    seed: int = 0,
    pin_memory: bool | None = None,
    drop_last: bool = False,
    distributed: bool | None = None,
) -> DataLoader:
    """A loader over ``dataset``; under an initialised process group a ``DistributedSampler``
    gives each rank its share (``distributed=False``: every sample here, as evaluation on one rank
    needs). Call :func:`set_epoch` before each epoch.

    With ``workers > 0`` OpenCV is made single-threaded in this process: forked workers cannot use
    a thread pool the parent started (they hang in it), and the workers are the parallelism anyway.
    """
    if workers > 0:
        cv2.setNumThreads(1)
    if distributed is None:
        distributed = dist.is_available() and dist.is_initialized()
    if distributed:
        sampler: Sampler[int] = DistributedSampler(dataset, shuffle=shuffle, seed=seed, drop_last=drop_last)
    else:
        sampler = EpochSampler(len(dataset), shuffle=shuffle, seed=seed)
    if shuffle and hasattr(dataset, "set_batch_size"):
        dataset.set_batch_size(batch_size)  # mosaic partners from the same batch (null window: the 8 before)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate,
        pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory,
        drop_last=drop_last,
        worker_init_fn=seed_worker,
        generator=torch.Generator().manual_seed(seed),
        persistent_workers=False,  # workers are forked per epoch and see the dataset's current epoch
        prefetch_factor=2 if workers > 0 else None,
    )


def set_epoch(loader: DataLoader, epoch: int) -> None:
    """Move the sampler and the dataset to ``epoch`` (order, augmentation draws, close-mosaic)."""
    if hasattr(loader.sampler, "set_epoch"):
        loader.sampler.set_epoch(epoch)
    if hasattr(loader.dataset, "set_epoch"):
        loader.dataset.set_epoch(epoch)
