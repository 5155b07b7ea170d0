"""Building blocks of the YOLOv8 / YOLO11 / YOLO26 families.

Each block registers its sub-modules in the same order as the reference architecture, so that
the state_dict of a model built from these blocks lines up tensor for tensor (in shape and
order) with the Ultralytics model of the same scale. Shapes use ``B`` batch, ``C`` channels.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from detector.boxes import expected_distances


def same_padding(kernel: int, dilation: int = 1) -> int:
    """Padding that keeps the spatial size for stride 1 (odd kernels)."""
    return dilation * (kernel - 1) // 2


class ConvBNAct(nn.Module):
    """Conv2d (no bias) -> BatchNorm2d -> SiLU; ``fuse()`` folds the BatchNorm into the conv."""

    def __init__(
        self,
        c_in: int,
        c_out: int,
        kernel: int = 1,
        stride: int = 1,
        groups: int = 1,
        dilation: int = 1,
        act: bool = True,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            c_in, c_out, kernel, stride, same_padding(kernel, dilation), dilation=dilation, groups=groups, bias=False
        )
        self.bn: nn.Module = nn.BatchNorm2d(c_out, eps=1e-3, momentum=0.03)
        self.act: nn.Module = nn.SiLU(inplace=True) if act else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:  # [B, C_in, H, W] -> [B, C_out, H/s, W/s]
        return self.act(self.bn(self.conv(x)))

    def fuse(self) -> None:
        """Fold the BatchNorm (its eval-mode statistics) into the conv weights and bias."""
        if isinstance(self.bn, nn.BatchNorm2d):
            self.conv = fuse_conv_bn_eval(self.conv.eval(), self.bn.eval())
            self.bn = nn.Identity()


def depthwise_conv(c_in: int, c_out: int, kernel: int = 3, stride: int = 1, act: bool = True) -> ConvBNAct:
    """Depthwise ConvBNAct: as many groups as the channel counts allow (their gcd)."""
    return ConvBNAct(c_in, c_out, kernel, stride, groups=math.gcd(c_in, c_out), act=act)


class Bottleneck(nn.Module):
    """Two convs with an optional residual connection (only when input and output widths agree)."""

    def __init__(
        self,
        c_in: int,
        c_out: int,
        shortcut: bool = True,
        kernels: tuple[int, int] = (3, 3),
        expansion: float = 0.5,
    ) -> None:
        super().__init__()
        hidden = int(c_out * expansion)
        self.cv1 = ConvBNAct(c_in, hidden, kernels[0])
        self.cv2 = ConvBNAct(hidden, c_out, kernels[1])
        self.add = shortcut and c_in == c_out

    def forward(self, x: Tensor) -> Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C2f(nn.Module):
    """CSP block with two convs (YOLOv8).

    A 1x1 conv widens the input to two halves of ``hidden`` channels; ``n`` inner blocks are
    chained on the second half, and every intermediate output is concatenated before the
    final 1x1 conv. ``inner`` builds one inner block from its width (a Bottleneck by default).
    """

    def __init__(
        self,
        c_in: int,
        c_out: int,
        n: int = 1,
        shortcut: bool = False,
        expansion: float = 0.5,
        inner: Callable[[int], nn.Module] | None = None,
    ) -> None:
        super().__init__()
        self.hidden = hidden = int(c_out * expansion)
        self.cv1 = ConvBNAct(c_in, 2 * hidden, 1)
        self.cv2 = ConvBNAct((2 + n) * hidden, c_out, 1)
        if inner is None:
            inner = lambda c: Bottleneck(c, c, shortcut, (3, 3), expansion=1.0)  # noqa: E731
        self.m = nn.ModuleList(inner(hidden) for _ in range(n))

    def forward(self, x: Tensor) -> Tensor:
        ys = list(self.cv1(x).chunk(2, 1))  # 2 x [B, hidden, H, W]
        for block in self.m:
            ys.append(block(ys[-1]))
        return self.cv2(torch.cat(ys, 1))


class C3k(nn.Module):
    """CSP block with three convs and a chain of ``n`` k x k bottlenecks (inner block of C3k2)."""

    def __init__(
        self, c_in: int, c_out: int, n: int = 1, shortcut: bool = True, expansion: float = 0.5, kernel: int = 3
    ) -> None:
        super().__init__()
        hidden = int(c_out * expansion)
        self.cv1 = ConvBNAct(c_in, hidden, 1)
        self.cv2 = ConvBNAct(c_in, hidden, 1)
        self.cv3 = ConvBNAct(2 * hidden, c_out, 1)
        self.m = nn.Sequential(
            *(Bottleneck(hidden, hidden, shortcut, (kernel, kernel), expansion=1.0) for _ in range(n))
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), 1))


class C3k2(C2f):
    """The C2f layout of YOLO11 / YOLO26 whose inner blocks are C3k (``c3k=True``), plain bottlenecks,
    or (``attn=True``, YOLO26's last neck block) a bottleneck followed by a :class:`PSABlock`."""

    def __init__(
        self,
        c_in: int,
        c_out: int,
        n: int = 1,
        c3k: bool = False,
        expansion: float = 0.5,
        shortcut: bool = True,
        attn: bool = False,
    ) -> None:
        if attn:
            inner: Callable[[int], nn.Module] = lambda c: nn.Sequential(  # noqa: E731
                Bottleneck(c, c, shortcut, (3, 3), expansion=0.5), PSABlock(c, 0.5, num_heads=max(c // 64, 1))
            )
        elif c3k:
            inner = lambda c: C3k(c, c, 2, shortcut)  # noqa: E731
        else:
            inner = lambda c: Bottleneck(c, c, shortcut, (3, 3), expansion=0.5)  # noqa: E731
        super().__init__(c_in, c_out, n, shortcut, expansion, inner)


class SPPF(nn.Module):
    """Spatial pyramid pooling, fast: ``n`` chained k x k max-pools of a 1x1 projection, concatenated
    and projected back. YOLOv8 / YOLO11: ``n=3``, SiLU after the first projection, no residual;
    YOLO26: the first projection without activation (``act=False``) and a residual (``shortcut``,
    when the widths agree)."""

    def __init__(
        self, c_in: int, c_out: int, kernel: int = 5, n: int = 3, shortcut: bool = False, act: bool = True
    ) -> None:
        super().__init__()
        hidden = c_in // 2
        self.n = n
        self.cv1 = ConvBNAct(c_in, hidden, 1, act=act)
        self.cv2 = ConvBNAct((n + 1) * hidden, c_out, 1)
        self.pool = nn.MaxPool2d(kernel, stride=1, padding=kernel // 2)
        self.add = shortcut and c_in == c_out

    def forward(self, x: Tensor) -> Tensor:
        ys = [self.cv1(x)]
        for _ in range(self.n):
            ys.append(self.pool(ys[-1]))
        y = self.cv2(torch.cat(ys, 1))
        return x + y if self.add else y


class Attention(nn.Module):
    """Multi-head self-attention over all positions of a feature map, with a depthwise positional conv.

    Queries and keys have ``key_dim = head_dim * attn_ratio`` channels per head; values keep
    ``head_dim``. A 3x3 depthwise conv of the values is added as a positional encoding.
    """

    def __init__(self, dim: int, num_heads: int = 8, attn_ratio: float = 0.5) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.key_dim = int(self.head_dim * attn_ratio)
        self.scale = self.key_dim**-0.5
        self.qkv = ConvBNAct(dim, dim + 2 * self.key_dim * num_heads, 1, act=False)
        self.proj = ConvBNAct(dim, dim, 1, act=False)
        self.pe = ConvBNAct(dim, dim, 3, groups=dim, act=False)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        qkv = self.qkv(x).view(b, self.num_heads, 2 * self.key_dim + self.head_dim, h * w)
        q, k, v = qkv.split([self.key_dim, self.key_dim, self.head_dim], dim=2)  # [B, heads, d, N]
        weights = ((q * self.scale).transpose(-2, -1) @ k).softmax(dim=-1)  # [B, heads, N, N]
        out = (v @ weights.transpose(-2, -1)).view(b, c, h, w)
        return self.proj(out + self.pe(v.reshape(b, c, h, w)))


class PSABlock(nn.Module):
    """Attention followed by a 1x1-conv feed-forward, both residual."""

    def __init__(self, dim: int, attn_ratio: float = 0.5, num_heads: int = 4) -> None:
        super().__init__()
        self.attn = Attention(dim, num_heads, attn_ratio)
        self.ffn = nn.Sequential(ConvBNAct(dim, 2 * dim, 1), ConvBNAct(2 * dim, dim, 1, act=False))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(x)
        return x + self.ffn(x)


class C2PSA(nn.Module):
    """CSP block whose second half goes through ``n`` position-sensitive attention blocks (YOLO11)."""

    def __init__(self, c_in: int, c_out: int, n: int = 1, expansion: float = 0.5) -> None:
        super().__init__()
        if c_in != c_out:
            raise ValueError(f"C2PSA keeps its width: got {c_in} -> {c_out} channels")
        self.hidden = hidden = int(c_in * expansion)
        self.cv1 = ConvBNAct(c_in, 2 * hidden, 1)
        self.cv2 = ConvBNAct(2 * hidden, c_in, 1)
        # one head per 64 channels; at least one, so very narrow models still build
        self.m = nn.Sequential(*(PSABlock(hidden, 0.5, num_heads=max(hidden // 64, 1)) for _ in range(n)))

    def forward(self, x: Tensor) -> Tensor:
        a, b = self.cv1(x).split((self.hidden, self.hidden), dim=1)
        return self.cv2(torch.cat((a, self.m(b)), 1))


class DFL(nn.Module):
    """Distribution focal loss integral: the expected value of a softmax over ``reg_max`` bins.

    The bin values are held as the fixed weight of a 1x1 conv (not trained, never called), as in the
    reference model, whose checkpoints carry it; :func:`detector.boxes.expected_distances` reads them.
    """

    def __init__(self, reg_max: int = 16) -> None:
        super().__init__()
        self.reg_max = reg_max
        self.conv = nn.Conv2d(reg_max, 1, 1, bias=False).requires_grad_(False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.arange(reg_max, dtype=torch.float32).view(1, reg_max, 1, 1))

    @property
    def bins(self) -> Tensor:  # [reg_max] the value of each bin
        return self.conv.weight.view(self.reg_max)

    def forward(self, x: Tensor) -> Tensor:  # [B, 4 * reg_max, A] logits -> [B, 4, A] distances in bins
        return expected_distances(x, self.bins)


def make_divisible(x: float, divisor: int = 8) -> int:
    """Smallest multiple of ``divisor`` that is >= ``x``."""
    return int(-(-x // divisor) * divisor)


def scale_channels(channels: int, width: float, max_channels: int) -> int:
    """Width scaling of the YOLO families: cap at ``max_channels``, multiply, round up to a multiple of 8."""
    return make_divisible(min(channels, max_channels) * width, 8)


def scale_depth(repeats: int, depth: float) -> int:
    """Depth scaling of the YOLO families: repeats > 1 are multiplied and rounded, never below 1."""
    return max(round(repeats * depth), 1) if repeats > 1 else repeats
