"""What the dataset doctor leaves of a split: the usable images and their annotations in flat
arrays (:class:`SplitIndex`), and the problems it found (:class:`Problem`)."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from detector.runs import write_text_atomic


@dataclass(frozen=True)
class Problem:
    """One problem: ``file``, ``line`` (1-based line of a label file, COCO annotation id, 0 for the
    whole file), ``kind`` (a key of ``PROBLEM_KINDS``) and what exactly is wrong."""

    file: str
    line: int | str
    kind: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line not in (0, "") else self.file
        return f"{where}: {self.kind}: {self.message}"


@dataclass
class SplitIndex:
    """The usable part of one split. Annotations of image ``i`` are rows ``offsets[i]:offsets[i+1]``."""

    name: str
    names: list[str]
    paths: np.ndarray  # [N] bytes, utf-8 absolute image paths
    sizes: np.ndarray  # [N, 2] int32 (height, width) as decoded
    image_ids: np.ndarray  # [N] int64
    offsets: np.ndarray  # [N + 1] int64
    boxes: np.ndarray  # [M, 4] float32 xyxy, pixels of the original image
    classes: np.ndarray  # [M] int64
    crowd: np.ndarray  # [M] bool: COCO crowd regions (not training targets)
    problems: list[Problem]
    num_listed: int  # images the split listed, usable or not

    def __len__(self) -> int:
        return len(self.paths)

    def head(self, count: int) -> SplitIndex:
        """The first ``count`` images (and their annotations): training on a fraction of the data."""
        count = max(1, min(count, len(self)))
        end = int(self.offsets[count])
        return SplitIndex(
            name=self.name,
            names=self.names,
            paths=self.paths[:count],
            sizes=self.sizes[:count],
            image_ids=self.image_ids[:count],
            offsets=self.offsets[: count + 1],
            boxes=self.boxes[:end],
            classes=self.classes[:end],
            crowd=self.crowd[:end],
            problems=self.problems,
            num_listed=self.num_listed,
        )

    def path(self, i: int) -> str:
        return self.paths[i].decode()

    def annotations(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``boxes [n, 4]`` xyxy pixels, ``classes [n]``, ``crowd [n]`` of image ``i``."""
        a, b = self.offsets[i], self.offsets[i + 1]
        return self.boxes[a:b], self.classes[a:b], self.crowd[a:b]

    def objects(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """``boxes [n, 4]`` and ``classes [n]`` of image ``i`` without crowd regions: its targets."""
        boxes, classes, crowd = self.annotations(i)
        return boxes[~crowd], classes[~crowd]

    def truth(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """:meth:`objects` of every image, in index order (for matching detections)."""
        return [self.objects(i) for i in range(len(self))]

    @property
    def backgrounds(self) -> int:
        return int((np.diff(self.offsets) == 0).sum())

    @property
    def instances(self) -> int:
        return int((~self.crowd).sum())

    def problem_counts(self) -> Counter[str]:
        return Counter(p.kind for p in self.problems)

    def summary(self) -> str:
        """One line: images, instances, backgrounds, problems."""
        text = f"{self.name}: {len(self):,} images ({self.backgrounds:,} backgrounds), {self.instances:,} instances"
        if self.problems:
            kinds = ", ".join(f"{n} {k}" for k, n in sorted(self.problem_counts().items()))
            skipped = self.num_listed - len(self)
            return f"{text}; {len(self.problems)} problems ({kinds}), {skipped} images skipped"
        return f"{text}; no problems"

    def write_report(self, path: str | os.PathLike) -> Path:
        """Write every problem, one per line (``file:line: kind: message``), atomically."""
        lines = [f"# {self.summary()}"] + [str(p) for p in self.problems]
        return write_text_atomic(Path(path), "\n".join(lines) + "\n")
