"""``python scripts/predict.py``: detections of images, videos, streams or a camera, written as JSON
(a file per image, a line per video frame) and drawn (PNG, MP4), through :mod:`detector.predict`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
from omegaconf import DictConfig, OmegaConf

from detector.config.schemas import PredictConfig
from detector.console import make_console
from detector.export.runtime import is_exported
from detector.predict import load, open_sources
from detector.predict.progress import PredictProgress
from detector.predict.writers import PredictionWriter
from detector.runs import make_run_dir
from detector.tasks.command_line import CommandLine


def run(cfg: DictConfig, command_line: CommandLine = CommandLine()) -> Path:
    settings: PredictConfig = OmegaConf.to_object(cfg)
    console = make_console()
    with opencv_quiet():  # a missing camera is our one error line, not OpenCV's log of the attempt
        sources = open_sources(settings.source, vid_stride=settings.vid_stride)
    # an exported graph has its own input size: imgsz applies to it only when the command line sets it
    exported = is_exported(settings.checkpoint)
    imgsz = None if exported and "imgsz" not in given_keys(command_line) else settings.imgsz
    model = load(
        settings.checkpoint,
        settings.device,
        imgsz=imgsz,
        branch=settings.branch,
        amp=settings.amp,
        onnxruntime=settings.onnxruntime,
        compile=settings.compile,
    )
    skipped: list[str] = []
    results = model.stream(  # settings checked here, before a run directory is made
        sources,
        conf=settings.conf,
        iou=settings.iou,
        max_det=settings.max_det,
        agnostic=settings.agnostic,
        batch=settings.batch,
        tile=settings.tile,
        tile_overlap=settings.tile_overlap,
        tile_full=settings.tile_full,
        on_skip=skipped.append,
    )
    run_dir = make_run_dir(settings.project, settings.task, settings.name, settings.exist_ok)
    unit = "frames" if sources.video else "images"
    with (
        PredictionWriter(run_dir, settings.save_images, settings.vid_stride) as writer,
        PredictProgress(console, sources.total(), unit) as progress,
    ):
        shown = 0

        def report_skipped() -> None:
            nonlocal shown
            for message in skipped[shown:]:
                progress.print(f"[yellow]skipped {message}[/yellow]")
                progress.advance()
            shown = len(skipped)

        try:
            for result in results:
                report_skipped()
                writer.write(result)
                if result.frame is None:
                    progress.print(f"{result.source}: {len(result)} detections")
                progress.advance()
            report_skipped()
        except KeyboardInterrupt:
            progress.print("interrupted: the predictions so far are kept")
    frames = f", {writer.frames} video frames" if writer.frames else ""
    console.print(f"{writer.images} images{frames} predicted, {len(skipped)} skipped -> {run_dir}")
    return run_dir


@contextmanager
def opencv_quiet() -> Iterator[None]:
    """OpenCV's own log silenced for the block (it logs every failed attempt to open a camera)."""
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        cv2.utils.logging.setLogLevel(level)


def given_keys(command_line: CommandLine) -> set[str]:
    """The keys the command line sets (``imgsz=320`` -> ``imgsz``)."""
    return {o.split("=", 1)[0].lstrip("+~") for o in command_line.overrides}
