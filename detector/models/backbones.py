"""Backbones: ``forward(x [B,3,H,W]) -> list[Tensor]`` fine to coarse, with ``out_channels`` and ``strides``.

- :class:`CSPDarknet`: the YOLOv8, YOLO11 and YOLO26 backbones at any depth / width scale.
- :class:`TorchvisionBackbone`: any torchvision classification network, tapped at named nodes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval
from torchvision.models import get_model_weights
from torchvision.models.feature_extraction import create_feature_extractor

from detector.models.blocks import C2PSA, SPPF, C2f, C3k2, ConvBNAct, scale_channels, scale_depth
from detector.types import CSPVariant


class CSPDarknet(nn.Module):
    """The YOLOv8 / YOLO11 / YOLO26 backbone: a stride-2 stem and four stride-2 stages; outputs P3, P4, P5.

    Channel and repeat counts are the reference ones (for width = depth = 1) scaled by
    ``width`` / ``depth`` with the channel cap ``max_channels``. ``c3k`` switches the C3k2 blocks
    that the reference leaves plain to C3k inner blocks (the YOLO11 m/l/x scales).
    """

    def __init__(
        self,
        variant: CSPVariant | str = CSPVariant.yolov8,
        depth: float = 0.33,
        width: float = 0.25,
        max_channels: int = 1024,
        c3k: bool = False,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        variant = CSPVariant(variant)

        def ch(c: int) -> int:
            return scale_channels(c, width, max_channels)

        def n(r: int) -> int:
            return scale_depth(r, depth)

        self.stem = ConvBNAct(in_channels, ch(64), 3, 2)  # P1/2
        stages: list[nn.Sequential] = []
        c_prev = ch(64)
        if variant is CSPVariant.yolov8:
            plan = [(128, 128, 3), (256, 256, 6), (512, 512, 6), (1024, 1024, 3)]  # (down conv, block, repeats)
            for i, (c_down, c_block, repeats) in enumerate(plan):
                layers: list[nn.Module] = [
                    ConvBNAct(c_prev, ch(c_down), 3, 2),
                    C2f(ch(c_down), ch(c_block), n(repeats), shortcut=True),
                ]
                if i == len(plan) - 1:
                    layers.append(SPPF(ch(c_block), ch(c_block), 5))
                stages.append(nn.Sequential(*layers))
                c_prev = ch(c_block)
        else:
            # YOLO11 and YOLO26 (which differ only in the SPPF)
            # (down conv, block, repeats, c3k, expansion); the reference forces c3k on the last two
            plan11 = [
                (128, 256, 2, c3k, 0.25),
                (256, 512, 2, c3k, 0.25),
                (512, 512, 2, True, 0.5),
                (1024, 1024, 2, True, 0.5),
            ]
            for i, (c_down, c_block, repeats, use_c3k, e) in enumerate(plan11):
                layers = [
                    ConvBNAct(c_prev, ch(c_down), 3, 2),
                    C3k2(ch(c_down), ch(c_block), n(repeats), c3k=use_c3k, expansion=e),
                ]
                if i == len(plan11) - 1:
                    if variant is CSPVariant.yolo26:  # projection without activation, and a residual
                        sppf = SPPF(ch(c_block), ch(c_block), 5, n=3, shortcut=True, act=False)
                    else:
                        sppf = SPPF(ch(c_block), ch(c_block), 5)
                    layers += [sppf, C2PSA(ch(c_block), ch(c_block), n(2))]
                stages.append(nn.Sequential(*layers))
                c_prev = ch(c_block)
        self.stages = nn.ModuleList(stages)  # strides 4, 8, 16, 32
        self.out_channels: tuple[int, ...] = tuple(_out_width(s) for s in self.stages[1:])
        self.strides: tuple[int, ...] = (8, 16, 32)

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.stem(x)
        outs: list[Tensor] = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i >= 1:
                outs.append(x)  # P3 [B, c3, H/8, W/8], P4 [.., H/16, ..], P5 [.., H/32, ..]
        return outs


def _out_width(stage: nn.Sequential) -> int:
    last = stage[-1]
    return last.cv2.conv.out_channels  # every stage ends in a block whose cv2 sets its width


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class TorchvisionBackbone(nn.Module):
    """A torchvision classification network tapped at ``return_nodes`` (fine to coarse).

    ``arch`` builds the network (e.g. ``torchvision.models.resnet18``) and receives ``weights``:
    ``None`` for random initialisation or a torchvision weights name (``"DEFAULT"``,
    ``"IMAGENET1K_V1"``, ``"ResNet18_Weights.IMAGENET1K_V2"``), downloaded by torchvision into
    ``$TORCH_HOME/hub/checkpoints`` on first use. With ``normalize`` the [0, 1] input is
    standardised with the ImageNet mean and std that such weights expect.
    """

    def __init__(
        self,
        arch: Callable[..., nn.Module],
        return_nodes: Sequence[str],
        weights: str | None = None,
        normalize: bool = True,
    ) -> None:
        super().__init__()
        arch_name = getattr(arch, "__name__", None) or getattr(getattr(arch, "func", None), "__name__", repr(arch))
        builder = getattr(arch, "func", arch)
        try:
            network = arch(weights=weights)
        except (KeyError, ValueError) as err:
            names = ["DEFAULT", *(w.name for w in get_model_weights(builder))]
            raise ValueError(
                f"unknown weights {weights!r} for torchvision {arch_name}; choose one of {names} or null"
            ) from err
        except OSError as err:  # urllib's URLError is an OSError: offline, proxy, or a missing file
            raise RuntimeError(
                f"could not fetch torchvision weights {weights!r} for {arch_name} ({err}). Without network, place the "
                f"weights file in {torch.hub.get_dir()}/checkpoints/ or use weights=null"
            ) from err
        nodes = list(return_nodes)
        try:
            self.body = create_feature_extractor(network, return_nodes={node: str(i) for i, node in enumerate(nodes)})
        except ValueError as err:
            raise ValueError(f"torchvision {arch_name} has no node among {nodes}: {err}") from err
        self.normalize = normalize
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.out_channels, self.strides = self._probe(nodes)

    @torch.no_grad()
    def _probe(self, nodes: list[str], size: int = 128) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Read output widths and strides off one forward pass on a blank image (eval mode, no stat updates)."""
        was_training = self.training
        self.eval()
        feats = self.forward(torch.zeros(1, 3, size, size, device=self.mean.device))
        self.train(was_training)
        channels = tuple(int(f.shape[1]) for f in feats)
        strides = tuple(size // int(f.shape[-1]) for f in feats)
        if any(b <= a for a, b in zip(strides, strides[1:])):
            raise ValueError(f"return_nodes {nodes} must go from fine to coarse; their strides are {strides}")
        return channels, strides

    def forward(self, x: Tensor) -> list[Tensor]:
        if self.normalize:
            x = (x - self.mean) / self.std
        out = self.body(x)
        return [out[str(i)] for i in range(len(out))]

    def fuse(self) -> None:
        """Fold every conv -> BatchNorm pair of the network (eval mode, for inference): pairs in the
        traced graph through ``torch.fx``, then pairs inside modules the trace kept whole
        (torchvision's Conv2dNormActivation) as consecutive children of a Sequential."""
        from torch.fx.experimental.optimization import fuse as fx_fuse

        # in place: fx's own copy of a graph module comes back in training mode, which cannot be fused
        body = fx_fuse(self.body.eval(), inplace=True, no_trace=True).eval()
        body.delete_all_unused_submodules()  # the folded BatchNorms, no longer called
        for seq in body.modules():
            if isinstance(seq, nn.Sequential):
                for i in range(len(seq) - 1):
                    if isinstance(seq[i], nn.Conv2d) and isinstance(seq[i + 1], nn.BatchNorm2d):
                        seq[i] = fuse_conv_bn_eval(seq[i], seq[i + 1])
                        seq[i + 1] = nn.Identity()
        self.body = body
