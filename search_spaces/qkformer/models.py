"""QKFormer models: the ImageNet layout (``QKFormer``) and the CIFAR layout (``QKFormerCIFAR``)."""

from __future__ import annotations

import torch
import torch.nn as nn

from search_spaces._layers import trunc_normal_init
from search_spaces.qkformer._blocks import CIFAR_FORCED_HEADS, SpikingTransformer, TokenSpikingTransformer
from search_spaces.qkformer._embed import PatchEmbedInit, PatchEmbeddingStage

__all__ = ["QKFormer", "QKFormerCIFAR"]


class _QKFormerBase(nn.Module):
    """Shared body of both layouts; see :class:`QKFormer` and :class:`QKFormerCIFAR`."""

    layout: str = "imagenet"
    #: number of token blocks in stage 2 (stage 1 always has one)
    stage2_depth: int = 2

    def __init__(
        self,
        *,
        img_size: int,
        patch_size: int,
        in_channels: int,
        num_classes: int,
        embed_dim: int,
        num_heads: int,
        mlp_ratio: float,
        depth: int,
        T: int,
    ) -> None:
        super().__init__()
        self.img_size = img_size
        self.patch_size = patch_size
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.mlp_ratio = mlp_ratio
        self.depth = depth
        self.T = T

        min_depth = 1 + self.stage2_depth
        if depth < min_depth:
            raise ValueError(f"QKFormer ({self.layout}) needs depth >= {min_depth}, got {depth}")
        if T < 1:
            raise ValueError(f"T must be >= 1, got {T}")
        if embed_dim % 8 != 0:
            raise ValueError(f"embed_dim must be a multiple of 8 (stage widths D/4, D/8), got {embed_dim}")
        heads = self._stage_heads(num_heads)
        self.stage_heads: tuple[int, int, int] = heads
        widths = (embed_dim // 4, embed_dim // 2, embed_dim)
        for w, h in zip(widths, heads):
            if w % h != 0:
                raise ValueError(f"stage width {w} is not divisible by {h} heads (embed_dim {embed_dim})")

        lay = self.layout
        self.patch_embed1 = PatchEmbedInit(in_channels, widths[0], layout=lay)
        self.stage1 = nn.ModuleList([TokenSpikingTransformer(widths[0], heads[0], mlp_ratio, layout=lay)])
        self.patch_embed2 = PatchEmbeddingStage(widths[1], layout=lay)
        self.stage2 = nn.ModuleList(
            [TokenSpikingTransformer(widths[1], heads[1], mlp_ratio, layout=lay) for _ in range(self.stage2_depth)]
        )
        self.patch_embed3 = PatchEmbeddingStage(widths[2], layout=lay)
        self.stage3 = nn.ModuleList(
            [SpikingTransformer(widths[2], heads[2], mlp_ratio, layout=lay) for _ in range(depth - min_depth)]
        )
        self.head: nn.Module = nn.Linear(embed_dim, num_classes) if num_classes > 0 else nn.Identity()
        self.apply(trunc_normal_init)

    def _stage_heads(self, num_heads: int) -> tuple[int, int, int]:
        return (num_heads, num_heads, num_heads)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``[T, B, C, H, W]`` input -> ``[T, B, D]`` (mean over the stage-3 tokens)."""
        x = self.patch_embed1(x)
        for blk in self.stage1:
            x = blk(x)
        x = self.patch_embed2(x)
        for blk in self.stage2:
            x = blk(x)
        x = self.patch_embed3(x)
        for blk in self.stage3:
            x = blk(x)
        return x.flatten(3).mean(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``[B, C, H, W]`` (repeated over T steps) -> logits ``[B, num_classes]``."""
        x = x.unsqueeze(0).repeat(self.T, 1, 1, 1, 1)
        x = self.forward_features(x)
        logits: torch.Tensor = self.head(x.mean(0))
        return logits


class QKFormer(_QKFormerBase):
    """QKFormer, ImageNet layout (official ``hierarchical_spiking_transformer``, ``QKFormer_10_*``).

    Stages: ``patch_embed1`` (D/4, /4 grid) + 1 token block, ``patch_embed2`` (D/2) + 2 token blocks,
    ``patch_embed3`` (D) + ``depth - 3`` SSA blocks (keys ``stage3.{i}.attn.*``), then ``head``.
    ``img_size`` and ``patch_size`` are stored only (the forward works for any input whose side is a
    multiple of 16); the official code uses ``num_heads`` in every stage. ``T`` defaults to 4, the value
    the official ImageNet models were trained with (their factory functions default to ``T=1``).
    """

    layout = "imagenet"
    stage2_depth = 2

    def __init__(
        self,
        *,
        img_size: int = 224,
        patch_size: int = 16,
        in_channels: int = 3,
        num_classes: int = 1000,
        embed_dim: int = 384,
        num_heads: int = 6,
        mlp_ratio: float = 4,
        depth: int = 10,
        T: int = 4,
    ) -> None:
        super().__init__(
            img_size=img_size, patch_size=patch_size, in_channels=in_channels, num_classes=num_classes,
            embed_dim=embed_dim, num_heads=num_heads, mlp_ratio=mlp_ratio, depth=depth, T=T,
        )


class QKFormerCIFAR(_QKFormerBase):
    """QKFormer, CIFAR layout (official ``spiking_transformer``, timm name ``QKFormer``).

    Stages: ``patch_embed1`` (D/4, full grid) + 1 token block, ``patch_embed2`` (D/2, /2) + 1 token block,
    ``patch_embed3`` (D, /4) + ``depth - 2`` SSA blocks (keys ``stage3.{i}.ssa.*``), then ``head``.
    As in the official constructor, every stage gets :data:`CIFAR_FORCED_HEADS` (8) heads regardless of
    ``num_heads`` (which is stored unchanged; see ``stage_heads``).
    """

    layout = "cifar"
    stage2_depth = 1

    def __init__(
        self,
        *,
        img_size: int = 32,
        patch_size: int = 4,
        in_channels: int = 3,
        num_classes: int = 10,
        embed_dim: int = 384,
        num_heads: int = 8,
        mlp_ratio: float = 4,
        depth: int = 4,
        T: int = 4,
    ) -> None:
        super().__init__(
            img_size=img_size, patch_size=patch_size, in_channels=in_channels, num_classes=num_classes,
            embed_dim=embed_dim, num_heads=num_heads, mlp_ratio=mlp_ratio, depth=depth, T=T,
        )

    def _stage_heads(self, num_heads: int) -> tuple[int, int, int]:
        return (CIFAR_FORCED_HEADS,) * 3
