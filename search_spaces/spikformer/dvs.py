"""Spikformer, ``cifar10dvs/model.py`` layout: Conv1d q/k/v/proj/MLP on ``[T,B,C,N]``, event-frame input."""

from __future__ import annotations

import torch
import torch.nn as nn

from search_spaces._fastops import spike_attention
from search_spaces._layers import lif

from search_spaces.spikformer._common import _MLPBase, _SPSBase, _SSAConv1d, _Spikformer

__all__ = ["SPSDVS", "SSADVS", "MLPDVS", "SpikformerDVS"]


class SPSDVS(_SPSBase):
    """CIFAR10-DVS SPS: pool after every conv (128 -> 8); the residual is added on ``[TB,D,h,w]``.

    Output ``[T,B,D,N]``. Spatial sizes come from the tensors (the official file hard-codes 64/32/16
    and ``(H//16)**2``, i.e. it only runs on 128x128); for 128x128 inputs the computation is the same.
    """

    def __init__(
        self, *, img_size: int | tuple[int, int], patch_size: int | tuple[int, int], in_channels: int, embed_dim: int
    ) -> None:
        super().__init__(img_size=img_size, patch_size=patch_size, in_channels=in_channels, embed_dim=embed_dim)
        self.maxpool = self._pool()
        self.maxpool1 = self._pool()
        self.maxpool2 = self._pool()
        self.maxpool3 = self._pool()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[T,B,2,H,W]`` -> ``[T,B,D,(H/16)(W/16)]``."""
        T, B = x.shape[:2]
        x = x.flatten(0, 1)
        for i, pool in enumerate((self.maxpool, self.maxpool1, self.maxpool2, self.maxpool3)):
            x = pool(self._stage(i, x, T, B))
        h, w = x.shape[-2:]
        x_rpe = self.rpe_bn(self.rpe_conv(x)).reshape(T, B, -1, h, w).contiguous()
        x_rpe = self.rpe_lif(x_rpe).flatten(0, 1)
        x = x + x_rpe
        return x.reshape(T, B, -1, h * w).contiguous()


class SSADVS(_SSAConv1d):
    """CIFAR10-DVS SSA on ``[T,B,C,N]``: ``attn_lif(((q @ kᵀ) @ v) * scale)`` -> proj -> BN -> LIF."""

    def __init__(self, *, dim: int, num_heads: int, scale: float = 0.25) -> None:
        super().__init__(dim=dim, num_heads=num_heads, scale=scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[T,B,C,N]`` -> ``[T,B,C,N]`` spikes."""
        T, B, _, N = x.shape
        _, dv = self._head_dims()
        q, k, v = self._qkv_heads(x.flatten(0, 1), T, B, N)
        x = spike_attention(q, k, v, self.scale, scale_before_v=False)  # ((q @ kᵀ) @ v) * scale
        x = x.transpose(3, 4).reshape(T, B, self.num_heads * dv, N).contiguous()
        x = self.attn_lif(x)
        x = x.flatten(0, 1)
        x = self.proj_lif(self.proj_bn(self.proj_conv(x)).reshape(T, B, self.proj_conv.out_channels, N))
        return x


class MLPDVS(_MLPBase):
    """Conv1d k1 (bias) + BN1d on ``[T,B,C,N]``."""

    def __init__(self, *, in_features: int, hidden_features: int) -> None:
        super().__init__(in_features=in_features, hidden_features=hidden_features)
        self.fc1_conv = nn.Conv1d(in_features, hidden_features, kernel_size=1, stride=1)
        self.fc1_bn = nn.BatchNorm1d(hidden_features)
        self.fc1_lif = lif()
        self.fc2_conv = nn.Conv1d(hidden_features, in_features, kernel_size=1, stride=1)
        self.fc2_bn = nn.BatchNorm1d(in_features)
        self.fc2_lif = lif()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[T,B,C,N]`` -> ``[T,B,C,N]`` spikes."""
        T, B, _, N = x.shape
        x = self.fc1_conv(x.flatten(0, 1))
        x = self.fc1_bn(x).reshape(T, B, self.c_hidden, N).contiguous()
        x = self.fc1_lif(x)
        x = self.fc2_conv(x.flatten(0, 1))
        x = self.fc2_bn(x).reshape(T, B, self.fc2_conv.out_channels, N).contiguous()
        x = self.fc2_lif(x)
        return x


class SpikformerDVS(_Spikformer):
    """Spikformer, ``cifar10dvs/model.py`` layout (defaults: the registered ``spikformer``, 2-256, T 16).

    Takes event frames ``[B,T,2,H,W]`` (official: 128x128); ``T`` records the expected number of steps,
    the forward uses the input's. ``pos_embed [1, num_patches, D]`` and ``norm`` are never called but are
    in official checkpoints.
    """

    layout = "dvs"
    _sps = SPSDVS
    _ssa = SSADVS
    _mlp = MLPDVS

    def __init__(
        self,
        *,
        img_size: int | tuple[int, int] = 128,
        patch_size: int | tuple[int, int] = 16,
        in_channels: int = 2,
        num_classes: int = 10,
        embed_dim: int = 256,
        num_heads: int = 16,
        mlp_ratio: float = 4.0,
        depth: int = 2,
        T: int = 16,
    ) -> None:
        super().__init__(
            img_size=img_size, patch_size=patch_size, in_channels=in_channels, num_classes=num_classes,
            embed_dim=embed_dim, num_heads=num_heads, mlp_ratio=mlp_ratio, depth=depth, T=T,
        )  # fmt: skip
        self.pos_embed = nn.Parameter(torch.zeros(1, self.patch_embed.num_patches, embed_dim))
        self.norm = nn.LayerNorm(embed_dim, eps=self._norm_eps)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self._init_weights()

    def _to_sequence(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 5:
            raise ValueError(f"SpikformerDVS takes event frames [B,T,C,H,W], got shape {tuple(x.shape)}")
        return x.permute(1, 0, 2, 3, 4)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``[T,B,2,H,W]`` -> ``[T,B,D]``."""
        x = self.patch_embed(x)
        for blk in self.block:
            x = blk(x)
        return x.mean(3)
