"""The Spike-driven Transformer model (ImageNet and CIFAR layouts, ``SpikeDrivenTransformer``)."""

from __future__ import annotations

import torch
import torch.nn as nn

from search_spaces.sdt.layers import MSBlock, MSSPS, SPIKE_MODES, _neuron

__all__ = ["SpikeDrivenTransformer"]


class SpikeDrivenTransformer(nn.Module):
    """The Spike-driven Transformer (official ``SpikeDrivenTransformer`` / timm entry ``sdt``).

    Input ``[B, C, H, W]`` (repeated ``T`` times) or ``[B, T, C, H, W]`` (its own T); output logits
    ``[B, num_classes]``: the token mean per step → ``head_lif`` → ``head`` per step → mean over T.
    The official forward returns ``(logits, hook)``; this one returns the logits only.

    Constructor arguments are stored unchanged as attributes of the same name.
    """

    def __init__(
        self,
        *,
        img_size: int = 224,
        patch_size: int = 16,
        in_channels: int = 3,
        num_classes: int = 1000,
        embed_dim: int = 512,
        num_heads: int = 8,
        mlp_ratio: float = 4.0,
        depth: int = 8,
        T: int = 4,
        pooling_stat: str = "1111",
        spike_mode: str = "lif",
    ) -> None:
        super().__init__()
        if spike_mode not in SPIKE_MODES:
            raise ValueError(f"spike_mode must be one of {SPIKE_MODES}, got {spike_mode!r}")
        self.img_size = img_size
        self.patch_size = patch_size
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.mlp_ratio = mlp_ratio
        self.depth = depth
        self.T = T
        self.pooling_stat = pooling_stat
        self.spike_mode = spike_mode

        self.patch_embed = MSSPS(
            img_size=img_size,
            patch_size=patch_size,
            in_channels=in_channels,
            embed_dim=embed_dim,
            pooling_stat=pooling_stat,
            spike_mode=spike_mode,
        )
        self.block = nn.ModuleList(
            [MSBlock(dim=embed_dim, num_heads=num_heads, mlp_ratio=mlp_ratio, spike_mode=spike_mode)
             for _ in range(depth)]
        )
        self.head_lif = _neuron(spike_mode)
        self.head = nn.Linear(embed_dim, num_classes) if num_classes > 0 else nn.Identity()
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        """Official init: trunc_normal(std .02) Conv2d weights, zero conv bias, BN2d 1/0."""
        if isinstance(m, nn.Conv2d):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.constant_(m.bias, 0)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.constant_(m.bias, 0)
            nn.init.constant_(m.weight, 1.0)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``[T, B, C, H, W]`` → token mean ``[T, B, D]`` (real-valued, before ``head_lif``)."""
        x = self.patch_embed(x)
        for blk in self.block:
            x = blk(x)
        return x.flatten(3).mean(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W]`` or ``[B, T, C, H, W]`` → logits ``[B, num_classes]``."""
        if x.dim() < 5:
            x = x.unsqueeze(0).repeat(self.T, 1, 1, 1, 1)
        else:
            x = x.transpose(0, 1).contiguous()
        x = self.forward_features(x)
        x = self.head_lif(x)
        x = self.head(x)  # per time step
        return x.mean(0)
