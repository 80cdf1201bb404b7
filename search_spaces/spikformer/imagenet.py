"""Spikformer, ``imagenet/model.py`` layout: Conv1d q/k/v/proj, Conv2d 1x1 MLP, ``[T,B,C,H,W]`` between blocks."""

from __future__ import annotations

import torch
import torch.nn as nn

from search_spaces._layers import lif

from search_spaces.spikformer._common import _MLPBase, _SPSBase, _SSAConv1d, _Spikformer

__all__ = ["SPSImageNet", "SSAImageNet", "MLPImageNet", "SpikformerImageNet"]


class SPSImageNet(_SPSBase):
    """ImageNet SPS: max-pool after each of the four convs (224 -> 14); output ``[T,B,D,h,w]``."""

    def __init__(
        self, *, img_size: int | tuple[int, int], patch_size: int | tuple[int, int], in_channels: int, embed_dim: int
    ) -> None:
        super().__init__(img_size=img_size, patch_size=patch_size, in_channels=in_channels, embed_dim=embed_dim)
        self.maxpool = self._pool()
        self.maxpool1 = self._pool()
        self.maxpool2 = self._pool()
        self.maxpool3 = self._pool()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[T,B,Cin,H,W]`` -> ``rpe_lif(rpe(x_feat)) + x_feat``, ``[T,B,D,H/16,W/16]`` (values 0..2)."""
        T, B = x.shape[:2]
        x = x.flatten(0, 1)
        for i, pool in enumerate((self.maxpool, self.maxpool1, self.maxpool2, self.maxpool3)):
            x = pool(self._stage(i, x, T, B))
        h, w = x.shape[-2:]
        x_feat = x.reshape(T, B, -1, h, w).contiguous()
        x = self.rpe_conv(x)
        x = self.rpe_bn(x).reshape(T, B, -1, h, w).contiguous()
        x = self.rpe_lif(x)
        return x + x_feat


class SSAImageNet(_SSAConv1d):
    """ImageNet SSA on ``[T,B,C,H,W]``: ``attn_lif((q @ (kᵀ @ v)) * scale)`` -> proj -> BN -> LIF."""

    def __init__(self, *, dim: int, num_heads: int, scale: float = 0.125) -> None:
        super().__init__(dim=dim, num_heads=num_heads, scale=scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[T,B,C,H,W]`` -> ``[T,B,C,H,W]`` spikes."""
        T, B, _, H, W = x.shape
        _, dv = self._head_dims()
        x = x.flatten(3)
        N = x.shape[-1]
        q, k, v = self._qkv_heads(x.flatten(0, 1), T, B, N)
        x = k.transpose(-2, -1) @ v  # [T,B,h,d_qk,d_v]
        x = (q @ x) * self.scale  # [T,B,h,N,d_v]
        x = x.transpose(3, 4).reshape(T, B, self.num_heads * dv, N).contiguous()
        x = self.attn_lif(x)
        x = x.flatten(0, 1)
        x = self.proj_lif(self.proj_bn(self.proj_conv(x)).reshape(T, B, self.proj_conv.out_channels, H, W))
        return x


class MLPImageNet(_MLPBase):
    """Conv2d 1x1 (bias) + BN2d on ``[T,B,C,H,W]``."""

    def __init__(self, *, in_features: int, hidden_features: int) -> None:
        super().__init__(in_features=in_features, hidden_features=hidden_features)
        self.fc1_conv = nn.Conv2d(in_features, hidden_features, kernel_size=1, stride=1)
        self.fc1_bn = nn.BatchNorm2d(hidden_features)
        self.fc1_lif = lif()
        self.fc2_conv = nn.Conv2d(hidden_features, in_features, kernel_size=1, stride=1)
        self.fc2_bn = nn.BatchNorm2d(in_features)
        self.fc2_lif = lif()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[T,B,C,H,W]`` -> ``[T,B,C,H,W]`` spikes."""
        T, B, _, H, W = x.shape
        x = self.fc1_conv(x.flatten(0, 1))
        x = self.fc1_bn(x).reshape(T, B, self.c_hidden, H, W).contiguous()
        x = self.fc1_lif(x)
        x = self.fc2_conv(x.flatten(0, 1))
        x = self.fc2_bn(x).reshape(T, B, self.fc2_conv.out_channels, H, W).contiguous()
        x = self.fc2_lif(x)
        return x


class SpikformerImageNet(_Spikformer):
    """Spikformer, ``imagenet/model.py`` layout (defaults: the registered ``spikformer``, 8-512).

    Args:
        img_size: input size (int or (h, w)); only recorded: the forward works on any size divisible by 16.
        patch_size: nominal patch size (recorded; SPS always downsamples by 16).
        in_channels, num_classes: image channels and classes K (K = 0 gives an identity head).
        embed_dim, num_heads, mlp_ratio, depth: D, heads, MLP width ratio, number of blocks.
        T: time steps; the image is repeated T times (official literal ``T = 4``).
    """

    layout = "imagenet"
    _sps = SPSImageNet
    _ssa = SSAImageNet
    _mlp = MLPImageNet

    def __init__(
        self,
        *,
        img_size: int | tuple[int, int] = 224,
        patch_size: int | tuple[int, int] = 16,
        in_channels: int = 3,
        num_classes: int = 1000,
        embed_dim: int = 512,
        num_heads: int = 8,
        mlp_ratio: float = 4.0,
        depth: int = 8,
        T: int = 4,
    ) -> None:
        super().__init__(
            img_size=img_size, patch_size=patch_size, in_channels=in_channels, num_classes=num_classes,
            embed_dim=embed_dim, num_heads=num_heads, mlp_ratio=mlp_ratio, depth=depth, T=T,
        )  # fmt: skip
        self._init_weights()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``[T,B,Cin,H,W]`` -> ``[T,B,D]``."""
        x = self.patch_embed(x)
        for blk in self.block:
            x = blk(x)
        return x.flatten(3).mean(3)
