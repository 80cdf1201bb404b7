"""Parts shared by the three Spikformer layouts: the SPS / SSA / MLP bases, the block, the model base."""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn as nn

from search_spaces._layers import ATTN_LIF_THRESHOLD, add_residual_branches, lif, trunc_normal_init


__all__ = ["SpikformerBlock"]  # the rest is private to the layouts of this package


def _pair(x: int | tuple[int, int]) -> tuple[int, int]:
    return (x, x) if isinstance(x, int) else (int(x[0]), int(x[1]))


def _check_heads(num_heads: int, **widths: int) -> None:
    for name, width in widths.items():
        if num_heads <= 0 or width % num_heads:
            raise ValueError(f"{name} width {width} is not divisible by num_heads {num_heads}")


class _SPSBase(nn.Module):
    """The five conv->BN->LIF stages shared by all layouts (keys ``proj_conv``..``rpe_bn``).

    Widths: ``in_channels -> D/8 -> D/4 -> D/2 -> D``, then the 3x3 ``rpe_conv`` ``D -> D``.
    Sub-classes add the max-pools their official file has and define ``forward``.
    """

    def __init__(
        self, *, img_size: int | tuple[int, int], patch_size: int | tuple[int, int], in_channels: int, embed_dim: int
    ) -> None:
        super().__init__()
        self.image_size = _pair(img_size)
        self.patch_size = _pair(patch_size)
        self.C = in_channels
        self.H, self.W = self.image_size[0] // self.patch_size[0], self.image_size[1] // self.patch_size[1]
        self.num_patches = self.H * self.W
        d = embed_dim
        widths = [in_channels, d // 8, d // 4, d // 2, d]
        for i, suffix in enumerate(["", "1", "2", "3"]):
            setattr(self, f"proj_conv{suffix}", nn.Conv2d(widths[i], widths[i + 1], 3, 1, 1, bias=False))
            setattr(self, f"proj_bn{suffix}", nn.BatchNorm2d(widths[i + 1]))
            setattr(self, f"proj_lif{suffix}", lif())
        self.rpe_conv = nn.Conv2d(d, d, 3, 1, 1, bias=False)
        self.rpe_bn = nn.BatchNorm2d(d)
        self.rpe_lif = lif()

    @staticmethod
    def _pool() -> nn.MaxPool2d:
        return nn.MaxPool2d(kernel_size=3, stride=2, padding=1, dilation=1, ceil_mode=False)

    def _stage(self, i: int, x: torch.Tensor, T: int, B: int) -> torch.Tensor:
        """conv ``i`` on ``[TB,C,H,W]`` -> BN -> ``[T,B,C',H,W]`` -> LIF -> ``[TB,C',H,W]`` (official order)."""
        suffix = ("", "1", "2", "3")[i]
        x = getattr(self, f"proj_conv{suffix}")(x)
        x = getattr(self, f"proj_bn{suffix}")(x).reshape(T, B, -1, *x.shape[-2:]).contiguous()
        x = getattr(self, f"proj_lif{suffix}")(x)
        return x.flatten(0, 1).contiguous()


class _SSABase(nn.Module):
    """Shared attributes and width bookkeeping of the three SSA variants.

    Attributes:
        dim: embedding width at construction (official attribute; not used by ``forward``).
        num_heads: number of heads; q/k are split into heads of ``qk_dim // num_heads`` channels, v into
            heads of ``v_dim // num_heads`` channels (channel ``c`` belongs to head ``c // head_dim``).
        scale: the constant attention scale (0.125, DVS 0.25; not 1/sqrt(d)).
    """

    q_lif: nn.Module
    k_lif: nn.Module
    v_lif: nn.Module
    attn_lif: nn.Module
    proj_lif: nn.Module
    #: names of the q, k, v and output projections (CIFAR: ``*_linear``)
    _proj_names: tuple[str, str, str, str] = ("q_conv", "k_conv", "v_conv", "proj_conv")

    def __init__(self, *, dim: int, num_heads: int, scale: float) -> None:
        super().__init__()
        _check_heads(num_heads, dim=dim)
        self.dim = dim
        self.num_heads = num_heads
        self.scale = scale

    def _out_width(self, name: str) -> int:
        m = getattr(self, name)
        return m.out_features if isinstance(m, nn.Linear) else m.out_channels

    @property
    def qk_dim(self) -> int:
        """Total q (= k) width W_qk, read from the q projection's weights."""
        return self._out_width(self._proj_names[0])

    @property
    def v_dim(self) -> int:
        """Total v width W_v (= ``proj`` input width), read from the v projection's weights."""
        return self._out_width(self._proj_names[2])

    def _head_dims(self) -> tuple[int, int]:
        """Per-head q/k and v widths; raises if the weights and ``num_heads`` disagree."""
        wq, wk, wv = (self._out_width(n) for n in self._proj_names[:3])
        if wq != wk:
            raise ValueError(f"q width {wq} != k width {wk}: q and k channels must be pruned together")
        _check_heads(self.num_heads, qk=wq, v=wv)
        return wq // self.num_heads, wv // self.num_heads


class _SSAConv1d(_SSABase):
    """Conv1d k1 q/k/v (no bias) and proj (bias), each followed by BN1d and a LIF (ImageNet, DVS)."""

    def __init__(self, *, dim: int, num_heads: int, scale: float) -> None:
        super().__init__(dim=dim, num_heads=num_heads, scale=scale)
        for name in ("q", "k", "v"):
            setattr(self, f"{name}_conv", nn.Conv1d(dim, dim, kernel_size=1, stride=1, bias=False))
            setattr(self, f"{name}_bn", nn.BatchNorm1d(dim))
            setattr(self, f"{name}_lif", lif())
        self.attn_lif = lif(ATTN_LIF_THRESHOLD)
        self.proj_conv = nn.Conv1d(dim, dim, kernel_size=1, stride=1)
        self.proj_bn = nn.BatchNorm1d(dim)
        self.proj_lif = lif()

    def _qkv_heads(self, x_for_qkv: torch.Tensor, T: int, B: int, N: int) -> tuple[torch.Tensor, ...]:
        """q, k, v spikes as ``[T,B,h,N,d]`` from ``[TB,C,N]`` (conv -> BN -> LIF -> head split)."""
        out = []
        for name in ("q", "k", "v"):
            conv = getattr(self, f"{name}_conv")
            width = conv.out_channels
            y = getattr(self, f"{name}_bn")(conv(x_for_qkv)).reshape(T, B, width, N).contiguous()
            y = getattr(self, f"{name}_lif")(y)
            y = y.transpose(-1, -2).reshape(T, B, N, self.num_heads, width // self.num_heads)
            out.append(y.permute(0, 1, 3, 2, 4).contiguous())
        return tuple(out)


class _MLPBase(nn.Module):
    """fc1 -> BN -> LIF -> fc2 -> BN -> LIF.

    Attributes:
        c_hidden: inner width (fc1 output channels); the fc1 reshape uses it, so update it when pruning.
        c_output: output width at construction (official attribute; not used by ``forward``).
    """

    def __init__(self, *, in_features: int, hidden_features: int) -> None:
        super().__init__()
        self.c_hidden = hidden_features
        self.c_output = in_features


class SpikformerBlock(nn.Module):
    """``x = x + attn(x); x = x + mlp(x)`` (integer-valued residual). ``norm1``/``norm2`` are never called.

    Depth pruning may remove a branch (``attn`` or ``mlp`` set to ``None``): the residual then carries
    ``x`` through unchanged.
    """

    attn: _SSABase | None
    mlp: _MLPBase | None

    def __init__(self, *, attn: _SSABase, mlp: _MLPBase, dim: int, norm_eps: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = attn
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = mlp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Same layout in and out (``[T,B,C,H,W]``, ``[T,B,N,C]`` or ``[T,B,C,N]``)."""
        return add_residual_branches(x, self.attn, self.mlp)


class _SSAClass(Protocol):
    """An SSA variant (its class): built without ``scale``, which defaults to the layout's constant."""

    def __call__(self, *, dim: int, num_heads: int) -> _SSABase: ...


class _Spikformer(nn.Module):
    """Common constructor of the three layouts; see the sub-classes."""

    family = "spikformer"
    layout = ""
    _sps: type[_SPSBase]
    _ssa: _SSAClass
    _mlp: type[_MLPBase]
    _norm_eps = 1e-6

    def __init__(
        self,
        *,
        img_size: int | tuple[int, int],
        patch_size: int | tuple[int, int],
        in_channels: int,
        num_classes: int,
        embed_dim: int,
        num_heads: int,
        mlp_ratio: float,
        depth: int,
        T: int,
    ) -> None:
        super().__init__()
        if embed_dim <= 0 or embed_dim % 8:
            raise ValueError(f"embed_dim must be a positive multiple of 8 (SPS widths D/8, D/4, D/2), got {embed_dim}")
        _check_heads(num_heads, embed_dim=embed_dim)
        if depth < 0 or T <= 0:
            raise ValueError(f"need depth >= 0 and T >= 1, got depth={depth}, T={T}")
        self.img_size = img_size
        self.patch_size = patch_size
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.mlp_ratio = mlp_ratio
        self.depth = depth
        self.T = T
        self.patch_embed = self._sps(
            img_size=img_size, patch_size=patch_size, in_channels=in_channels, embed_dim=embed_dim
        )
        hidden = int(embed_dim * mlp_ratio)
        self.block = nn.ModuleList(
            SpikformerBlock(
                attn=self._ssa(dim=embed_dim, num_heads=num_heads),
                mlp=self._mlp(in_features=embed_dim, hidden_features=hidden),
                dim=embed_dim,
                norm_eps=self._norm_eps,
            )
            for _ in range(depth)
        )
        self.head: nn.Module = nn.Linear(embed_dim, num_classes) if num_classes > 0 else nn.Identity()

    def _init_weights(self) -> None:
        self.apply(trunc_normal_init)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Time-major input sequence ``[T,B,Cin,H,W]`` -> token-mean features ``[T,B,D]``."""
        raise NotImplementedError

    def _to_sequence(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(f"{type(self).__name__} takes images [B,C,H,W], got shape {tuple(x.shape)}")
        return x.unsqueeze(0).repeat(self.T, 1, 1, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[B,K]``: the head runs once per image on the mean over tokens, then over T."""
        x = self.forward_features(self._to_sequence(x))
        logits: torch.Tensor = self.head(x.mean(0))
        return logits
