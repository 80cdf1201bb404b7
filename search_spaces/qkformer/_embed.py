"""QKFormer's patch embeddings: the stem (``PatchEmbedInit``) and the between-stage ``PatchEmbeddingStage``."""

from __future__ import annotations

import torch
import torch.nn as nn

from search_spaces._layers import lif
from search_spaces.qkformer._blocks import _check_layout, _unfold

__all__ = ["PatchEmbedInit", "PatchEmbeddingStage"]


def _maxpool() -> nn.MaxPool2d:
    return nn.MaxPool2d(kernel_size=3, stride=2, padding=1, dilation=1, ceil_mode=False)


class PatchEmbedInit(nn.Module):
    """``patch_embed1`` at width e = D/4: two LIF paths summed.

    ImageNet: conv -> BN -> pool -> LIF (s); conv1 -> BN -> pool -> LIF; conv2 -> BN -> LIF; residual
    1x1 stride-2 conv on s -> BN -> LIF. CIFAR: no pools, no conv2, residual stride 1.
    """

    def __init__(self, in_channels: int, embed_dim: int, *, layout: str = "imagenet") -> None:
        super().__init__()
        _check_layout(layout)
        self.layout = layout
        e = embed_dim
        pools = layout == "imagenet"
        self.proj_conv = nn.Conv2d(in_channels, e // 2, kernel_size=3, stride=1, padding=1, bias=False)
        self.proj_bn = nn.BatchNorm2d(e // 2)
        if pools:
            self.proj_maxpool = _maxpool()
        self.proj_lif = lif()
        self.proj1_conv = nn.Conv2d(e // 2, e, kernel_size=3, stride=1, padding=1, bias=False)
        self.proj1_bn = nn.BatchNorm2d(e)
        if pools:
            self.proj1_maxpool = _maxpool()
        self.proj1_lif = lif()
        if pools:
            self.proj2_conv = nn.Conv2d(e, e, kernel_size=3, stride=1, padding=1, bias=False)
            self.proj2_bn = nn.BatchNorm2d(e)
            self.proj2_lif = lif()
        self.proj_res_conv = nn.Conv2d(e // 2, e, kernel_size=1, stride=2 if pools else 1, padding=0, bias=False)
        self.proj_res_bn = nn.BatchNorm2d(e)
        self.proj_res_lif = lif()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, B = x.shape[:2]
        imagenet = self.layout == "imagenet"
        x = self.proj_bn(self.proj_conv(x.flatten(0, 1)))
        if imagenet:
            x = self.proj_maxpool(x)
        x = self.proj_lif(_unfold(x, T, B).contiguous()).flatten(0, 1).contiguous()

        x_feat: torch.Tensor = x
        x = self.proj1_bn(self.proj1_conv(x))
        if imagenet:
            x = self.proj1_maxpool(x)
            x = self.proj1_lif(_unfold(x, T, B).contiguous()).flatten(0, 1).contiguous()
            x = self.proj2_bn(self.proj2_conv(x))
            x = self.proj2_lif(_unfold(x, T, B).contiguous())
        else:
            x = self.proj1_lif(_unfold(x, T, B))

        x_feat = self.proj_res_bn(self.proj_res_conv(x_feat))
        x_feat = self.proj_res_lif(_unfold(x_feat, T, B).contiguous())
        return x + x_feat


class PatchEmbeddingStage(nn.Module):
    """``patch_embed{2,3}`` at width e (input e/2), halving the grid; two LIF paths summed.

    ImageNet: conv3 -> BN -> pool -> LIF; conv4 -> BN -> LIF. CIFAR: conv3 -> BN -> LIF; conv4 -> BN ->
    pool -> LIF. Both: residual 1x1 stride-2 conv on the input -> BN -> LIF.
    """

    def __init__(self, embed_dim: int, *, layout: str = "imagenet") -> None:
        super().__init__()
        _check_layout(layout)
        self.layout = layout
        e = embed_dim
        self.proj3_conv = nn.Conv2d(e // 2, e, kernel_size=3, stride=1, padding=1, bias=False)
        self.proj3_bn = nn.BatchNorm2d(e)
        if layout == "imagenet":
            self.proj3_maxpool = _maxpool()
        self.proj3_lif = lif()
        self.proj4_conv = nn.Conv2d(e, e, kernel_size=3, stride=1, padding=1, bias=False)
        self.proj4_bn = nn.BatchNorm2d(e)
        if layout == "cifar":
            self.proj4_maxpool = _maxpool()
        self.proj4_lif = lif()
        self.proj_res_conv = nn.Conv2d(e // 2, e, kernel_size=1, stride=2, padding=0, bias=False)
        self.proj_res_bn = nn.BatchNorm2d(e)
        self.proj_res_lif = lif()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, B = x.shape[:2]
        imagenet = self.layout == "imagenet"
        x = x.flatten(0, 1).contiguous()
        x_feat: torch.Tensor = x

        x = self.proj3_bn(self.proj3_conv(x))
        if imagenet:
            x = self.proj3_maxpool(x)
        x = self.proj3_lif(_unfold(x, T, B).contiguous()).flatten(0, 1).contiguous()

        x = self.proj4_bn(self.proj4_conv(x))
        if not imagenet:
            x = self.proj4_maxpool(x)
        x = self.proj4_lif(_unfold(x, T, B).contiguous())

        x_feat = self.proj_res_bn(self.proj_res_conv(x_feat))
        x_feat = self.proj_res_lif(_unfold(x_feat, T, B).contiguous())
        return x + x_feat
