"""Spikformer, ``cifar10/model.py`` layout: Linear q/k/v/proj/MLP + BN1d on channels-last ``[T,B,N,C]``."""

from __future__ import annotations

import torch
import torch.nn as nn

from search_spaces._fastops import batch_norm_last_dim, spike_attention
from search_spaces._layers import ATTN_LIF_THRESHOLD, lif

from search_spaces.spikformer._common import _MLPBase, _SPSBase, _SSABase, _Spikformer

__all__ = ["SPSCIFAR", "SSACIFAR", "MLPCIFAR", "SpikformerCIFAR"]


class SPSCIFAR(_SPSBase):
    """CIFAR SPS: convs 0-2 at full size, pool after conv2 and conv3 (32 -> 8); output ``[T,B,N,D]``."""

    def __init__(
        self, *, img_size: int | tuple[int, int], patch_size: int | tuple[int, int], in_channels: int, embed_dim: int
    ) -> None:
        super().__init__(img_size=img_size, patch_size=patch_size, in_channels=in_channels, embed_dim=embed_dim)
        self.maxpool2 = self._pool()
        self.maxpool3 = self._pool()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[T,B,Cin,H,W]`` -> ``[T,B,N,D]`` (a transposed view, as in the official code)."""
        T, B = x.shape[:2]
        x = x.flatten(0, 1)
        x = self._stage(0, x, T, B)
        x = self._stage(1, x, T, B)
        x = self.maxpool2(self._stage(2, x, T, B))
        x = self.maxpool3(self._stage(3, x, T, B))
        h, w = x.shape[-2:]
        x_feat = x.reshape(T, B, -1, h, w).contiguous()
        x = self.rpe_conv(x)
        x = self.rpe_bn(x).reshape(T, B, -1, h, w).contiguous()
        x = self.rpe_lif(x)
        x = x + x_feat
        return x.flatten(-2).transpose(-1, -2)


class SSACIFAR(_SSABase):
    """CIFAR SSA on ``[T,B,N,C]``: Linear (bias) + BN1d; ``attn_lif(((q @ kᵀ) * scale) @ v)``."""

    _proj_names = ("q_linear", "k_linear", "v_linear", "proj_linear")

    def __init__(self, *, dim: int, num_heads: int, scale: float = 0.125) -> None:
        super().__init__(dim=dim, num_heads=num_heads, scale=scale)
        for name in ("q", "k", "v"):
            setattr(self, f"{name}_linear", nn.Linear(dim, dim))
            setattr(self, f"{name}_bn", nn.BatchNorm1d(dim))
            setattr(self, f"{name}_lif", lif())
        self.attn_lif = lif(ATTN_LIF_THRESHOLD)
        self.proj_linear = nn.Linear(dim, dim)
        self.proj_bn = nn.BatchNorm1d(dim)
        self.proj_lif = lif()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[T,B,N,C]`` -> ``[T,B,N,C]`` spikes."""
        T, B, N, _ = x.shape
        _, dv = self._head_dims()
        x_for_qkv = x.flatten(0, 1)  # [TB,N,C]
        heads = []
        for name in ("q", "k", "v"):
            linear = getattr(self, f"{name}_linear")
            width = linear.out_features
            y = linear(x_for_qkv)
            y = batch_norm_last_dim(getattr(self, f"{name}_bn"), y).reshape(T, B, N, width).contiguous()
            y = getattr(self, f"{name}_lif")(y)
            heads.append(y.reshape(T, B, N, self.num_heads, width // self.num_heads).permute(0, 1, 3, 2, 4).contiguous())
        q, k, v = heads
        x = spike_attention(q, k, v, self.scale, scale_before_v=True)  # ((q @ kᵀ) * scale) @ v
        x = x.transpose(2, 3).reshape(T, B, N, self.num_heads * dv).contiguous()
        x = self.attn_lif(x)
        x = x.flatten(0, 1)
        x = batch_norm_last_dim(self.proj_bn, self.proj_linear(x))
        x = self.proj_lif(x.reshape(T, B, N, self.proj_linear.out_features))
        return x


class MLPCIFAR(_MLPBase):
    """Linear (bias) + BN1d on channels-last ``[T,B,N,C]`` (BN on the transposed ``[TB,C,N]``)."""

    def __init__(self, *, in_features: int, hidden_features: int) -> None:
        super().__init__(in_features=in_features, hidden_features=hidden_features)
        self.fc1_linear = nn.Linear(in_features, hidden_features)
        self.fc1_bn = nn.BatchNorm1d(hidden_features)
        self.fc1_lif = lif()
        self.fc2_linear = nn.Linear(hidden_features, in_features)
        self.fc2_bn = nn.BatchNorm1d(in_features)
        self.fc2_lif = lif()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[T,B,N,C]`` -> ``[T,B,N,C]`` spikes."""
        T, B, N, _ = x.shape
        x = self.fc1_linear(x.flatten(0, 1))
        x = batch_norm_last_dim(self.fc1_bn, x).reshape(T, B, N, self.c_hidden).contiguous()
        x = self.fc1_lif(x)
        x = self.fc2_linear(x.flatten(0, 1))
        x = batch_norm_last_dim(self.fc2_bn, x).reshape(T, B, N, self.fc2_linear.out_features).contiguous()
        x = self.fc2_lif(x)
        return x


class SpikformerCIFAR(_Spikformer):
    """Spikformer, ``cifar10/model.py`` layout (defaults: ``cifar10.yml``, 4-384, K 10).

    Args: as :class:`SpikformerImageNet`; the SPS downsamples by 4 (``patch_size`` is recorded only).
    The dead ``norm1``/``norm2`` use ``nn.LayerNorm``'s default eps 1e-5 as in the official file.
    """

    layout = "cifar"
    _sps = SPSCIFAR
    _ssa = SSACIFAR
    _mlp = MLPCIFAR
    _norm_eps = 1e-5

    def __init__(
        self,
        *,
        img_size: int | tuple[int, int] = 32,
        patch_size: int | tuple[int, int] = 4,
        in_channels: int = 3,
        num_classes: int = 10,
        embed_dim: int = 384,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        depth: int = 4,
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
        return x.mean(2)
