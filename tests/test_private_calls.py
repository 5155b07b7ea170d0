"""The private torch calls the project relies on (ARCHITECTURE.md, recorded exceptions), each
checked where it is used, so that a torch release that changes them fails here first."""

from __future__ import annotations

import platform
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from detector.data.loader import stack_images
from detector.device import cpu_has_native_bf16


@pytest.mark.skipif(platform.system() != "Linux", reason="reads /proc/cpuinfo")
def test_native_bf16_detection_agrees_with_the_cpu_flags() -> None:
    flags = set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            flags |= set(line.split(":", 1)[1].split())
    assert cpu_has_native_bf16() == bool({"avx512_bf16", "amx_tile"} & flags)


class Images(Dataset):
    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.full((3, 5, 7), i, dtype=torch.uint8)


def test_batches_stacked_in_a_worker_land_in_shared_memory_with_the_right_values() -> None:
    loader = DataLoader(Images(), batch_size=2, num_workers=1, collate_fn=stack_images)
    batches = list(loader)
    assert [b.shape for b in batches] == [(2, 3, 5, 7)] * 2
    assert all(b.is_shared() for b in batches)
    for k, batch in enumerate(batches):
        assert torch.equal(batch[:, 0, 0, 0], torch.tensor([2 * k, 2 * k + 1], dtype=torch.uint8))
        assert batch.is_contiguous()


def test_in_the_main_process_the_batch_is_a_plain_stack() -> None:
    images = [torch.rand(3, 4, 4) for _ in range(3)]
    assert torch.equal(stack_images(images), torch.stack(images))
