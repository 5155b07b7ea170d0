"""Pictures of what a conv learned (its filters) and what it sees (the feature maps of an image).

Both return ``[H, W, 3]`` uint8 RGB grids built with :func:`detector.images.image_grid`; save
them with :func:`detector.images.save_png`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import Tensor, nn

from detector.errors import ConfigError
from detector.images import decode_image, image_grid
from detector.inspect.stats import CONV_TYPES
from detector.letterbox import fit_longest_side, place_centred


def _colormap(name: str, values: np.ndarray) -> np.ndarray:
    """``values`` in [0, 1] (any shape) -> uint8 RGB (shape + [3]) through a matplotlib colormap."""
    import matplotlib

    matplotlib.use("Agg")
    return (matplotlib.colormaps[name](np.clip(values, 0.0, 1.0))[..., :3] * 255).round().astype(np.uint8)


def _enlarge(tile: np.ndarray, cell: int) -> np.ndarray:
    """Nearest-neighbour enlargement by the integer factor that brings the longer side closest to ``cell``."""
    factor = max(1, cell // max(tile.shape[:2]))
    return np.repeat(np.repeat(tile, factor, axis=0), factor, axis=1)


def _planes(conv: nn.Module) -> Tensor:
    """``[out, in / groups, kh, kw]``: each filter's 2-d kernels (1-d kernels as one row, the middle
    depth slice of 3-d ones; a transposed conv's filters per output channel)."""
    w = conv.weight.detach().float().cpu()
    if isinstance(conv, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
        g = conv.groups
        c_in, out_per_group, *kernel = w.shape
        w = (
            w.reshape(g, c_in // g, out_per_group, *kernel)
            .transpose(1, 2)
            .reshape(g * out_per_group, c_in // g, *kernel)
        )
    if w.dim() == 3:
        w = w[:, :, None, :]  # [O, I, 1, k]
    elif w.dim() == 5:
        w = w[:, :, w.shape[2] // 2]  # [O, I, kh, kw]
    return w


def kernel_grid(conv: nn.Module, cell: int = 32, max_filters: int = 64, max_inputs: int = 16) -> np.ndarray:
    """The filters of ``conv`` as a grid.

    A conv reading 3 channels per filter (the first conv of a network) shows each filter as one
    colour tile (red, green, blue = its weights on the three input channels, one scale for the
    layer). Any other shows one tile per filter and input channel, a row per filter (at most
    ``max_filters`` x ``max_inputs``), blue negative, white zero, red positive, one symmetric scale
    for the layer. Tiles are enlarged to about ``cell`` pixels.
    """
    if not isinstance(conv, CONV_TYPES):
        raise TypeError(f"kernel_grid needs a conv module, got {type(conv).__name__}")
    planes = _planes(conv)[:max_filters]  # [O, I, kh, kw]
    if planes.shape[1] == 3:
        lo, hi = float(planes.min()), float(planes.max())
        rgb = (planes - lo) / (hi - lo if hi > lo else 1.0)  # [O, 3, kh, kw] in [0, 1]
        tiles = [_enlarge((f.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8), cell) for f in rgb]
        return image_grid(tiles)
    planes = planes[:, :max_inputs]
    scale = float(planes.abs().max()) or 1.0
    colours = _colormap("RdBu_r", (planes.numpy() / scale + 1.0) / 2.0)  # [O, I, kh, kw, 3]
    tiles = [_enlarge(colours[o, i], cell) for o in range(colours.shape[0]) for i in range(colours.shape[1])]
    return image_grid(tiles, columns=colours.shape[1])


def feature_grid(fmap: Tensor, max_maps: int = 64, max_side: int = 160) -> np.ndarray:
    """The channels of one feature map ``[C, H, W]`` as a grid of viridis tiles, each stretched to its own
    min..max; at most ``max_maps`` channels, tiles shrunk so that their longer side is at most ``max_side``."""
    maps = fmap.detach().float().cpu()[:max_maps]
    if maps.dim() != 3:
        raise ValueError(f"feature_grid needs a [C, H, W] map, got shape {tuple(fmap.shape)}")
    lo = maps.amin(dim=(1, 2), keepdim=True)
    hi = maps.amax(dim=(1, 2), keepdim=True)
    normed = ((maps - lo) / (hi - lo).clamp_min(1e-12)).numpy()  # [C, H, W] in [0, 1]
    h, w = normed.shape[1:]
    shrink = min(1.0, max_side / max(h, w))
    size = (max(1, round(w * shrink)), max(1, round(h * shrink)))
    tiles = []
    for plane in normed:
        if shrink < 1.0:
            plane = cv2.resize(plane, size, interpolation=cv2.INTER_AREA)
        tiles.append(_colormap("viridis", plane))
    return image_grid(tiles)


def load_image(path: str | Path, size: Sequence[int], key: str = "image") -> Tensor:
    """``[1, 3, H, W]`` float in [0, 1]: the image at ``path`` fitted into ``size`` (H, W) keeping its
    aspect, centred on grey, as the detector sees it. An unreadable file is a :class:`ConfigError`."""
    path = Path(path).expanduser()
    image = decode_image(path) if path.is_file() else None
    if image is None:
        raise ConfigError(f"{key}={path}: {'no such file' if not path.exists() else 'not an image OpenCV can read'}")
    hw = (int(size[0]), int(size[1]))
    canvas = place_centred(fit_longest_side(image, hw), hw)
    return torch.from_numpy(canvas).permute(2, 0, 1)[None].float().div(255)


@torch.no_grad()
def feature_maps(model: nn.Module, x: Tensor, paths: Sequence[str]) -> dict[str, Tensor]:
    """``{path: [C, H, W]}``: what the modules at ``paths`` output for the first image of ``x`` (eval mode)."""
    modules = dict(model.named_modules())
    captured: dict[str, Tensor] = {}
    handles = []
    for path in paths:

        def keep(module: nn.Module, args: object, output: object, path: str = path) -> None:
            if isinstance(output, Tensor) and path not in captured:
                captured[path] = output[0].detach().float().cpu()

        handles.append(modules[path].register_forward_hook(keep))
    was_training = model.training
    model.eval()
    try:
        first = next(model.parameters(), None)
        model(x.to(first.device, first.dtype) if first is not None else x)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    for path in paths:
        if path not in captured:
            raise ConfigError(f"feature_maps: {path} did not output one tensor in the forward pass")
        if captured[path].dim() != 3:
            raise ConfigError(
                f"feature_maps: {path} outputs {tuple(captured[path].shape)} per image, not a [C, H, W] map"
            )
    return captured
