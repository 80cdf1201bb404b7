"""Spikformer (ZK-Zhou/spikformer) in its three official layouts, with official state_dict keys.

* :class:`SpikformerImageNet` follows ``imagenet/model.py``: Conv1d q/k/v/proj, Conv2d 1x1 MLP, tensors
  ``[T,B,C,H,W]`` between blocks, attention ``(q @ (kᵀ @ v)) * 0.125``, four SPS max-pools.
* :class:`SpikformerCIFAR` follows ``cifar10/model.py``: Linear q/k/v/proj/MLP (all with bias) + BN1d,
  channels-last ``[T,B,N,C]``, attention ``((q @ kᵀ) * 0.125) @ v``, SPS pools after conv2 and conv3.
* :class:`SpikformerDVS` follows ``cifar10dvs/model.py``: Conv1d q/k/v/proj/MLP, ``[T,B,C,N]``,
  attention ``((q @ kᵀ) @ v) * 0.25``, a pool after every SPS conv, dead ``pos_embed`` and ``norm``.

The forward passes repeat the official operation sequence (reshapes, flatten order, thresholds, LIF
placement), so an official checkpoint loads with ``strict=True`` and gives bit-identical logits. Two
deliberate generalisations, both exact for unpruned models:

* the attention takes its inner widths from its own q/k/v weights and ``num_heads`` (not from the
  input's channel count), and the MLP reshapes with ``c_hidden``; physically pruned heads, q/k/v
  channels or MLP channels therefore need no new forward code;
* spatial sizes in the SPS reshapes come from the tensors, not from literals (the official DVS file
  hard-codes 64/32/16) and the ImageNet ``T`` is a constructor argument (official literal ``T = 4``).

Never-called, parameter-free official modules (``drop_path``, DVS ``attn_drop`` and ``res_lif``) are
left out; the never-called LayerNorms (``norm1``/``norm2``, DVS ``pos_embed``/``norm``) are kept
because official checkpoints contain them.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from search_spaces._fastops import batch_norm_last_dim, spike_attention
from search_spaces._layers import ATTN_LIF_THRESHOLD, add_residual_branches, lif, trunc_normal_init
from search_spaces._registry import ModelConfig, register_config

__all__ = [
    "SpikformerImageNet",
    "SpikformerCIFAR",
    "SpikformerDVS",
    "SPSImageNet",
    "SPSCIFAR",
    "SPSDVS",
    "SSAImageNet",
    "SSACIFAR",
    "SSADVS",
    "MLPImageNet",
    "MLPCIFAR",
    "MLPDVS",
    "SpikformerBlock",
]


def _pair(x: int | tuple[int, int]) -> tuple[int, int]:
    return (x, x) if isinstance(x, int) else (int(x[0]), int(x[1]))


def _check_heads(num_heads: int, **widths: int) -> None:
    for name, width in widths.items():
        if num_heads <= 0 or width % num_heads:
            raise ValueError(f"{name} width {width} is not divisible by num_heads {num_heads}")


# --------------------------------------------------------------------------------------------------
# Spiking patch splitting (SPS)
# --------------------------------------------------------------------------------------------------


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
        return getattr(self, f"proj_lif{suffix}")(x).flatten(0, 1).contiguous()


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


# --------------------------------------------------------------------------------------------------
# Spiking self-attention (generalised: inner widths from the q/k/v weights and ``num_heads``)
# --------------------------------------------------------------------------------------------------


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
        return self.proj_lif(self.proj_bn(self.proj_conv(x)).reshape(T, B, self.proj_conv.out_channels, H, W))


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
        return self.proj_lif(self.proj_bn(self.proj_conv(x)).reshape(T, B, self.proj_conv.out_channels, N))


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
        return self.proj_lif(x.reshape(T, B, N, self.proj_linear.out_features))


# --------------------------------------------------------------------------------------------------
# MLPs (reshape with the stored hidden width ``c_hidden``)
# --------------------------------------------------------------------------------------------------


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
        return self.fc2_lif(x)


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
        return self.fc2_lif(x)


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
        return self.fc2_lif(x)


# --------------------------------------------------------------------------------------------------
# Block and models
# --------------------------------------------------------------------------------------------------


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


class _Spikformer(nn.Module):
    """Common constructor of the three layouts; see the sub-classes."""

    family = "spikformer"
    layout = ""
    _sps: type[_SPSBase] = SPSImageNet
    _ssa: type[_SSABase] = SSAImageNet
    _mlp: type[_MLPBase] = MLPImageNet
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
        return self.head(x.mean(0))


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


# --------------------------------------------------------------------------------------------------
# Registered configurations (official_params: sum(p.numel()) of the official code, dead LNs included)
# --------------------------------------------------------------------------------------------------


def _imagenet(depth: int, dim: int, heads: int, params: int, note: str = "") -> None:
    register_config(
        ModelConfig(
            name=f"spikformer-{depth}-{dim}",
            family="spikformer",
            layout="imagenet",
            builder=SpikformerImageNet,
            kwargs=dict(
                img_size=224, patch_size=16, in_channels=3, num_classes=1000, embed_dim=dim,
                num_heads=heads, mlp_ratio=4.0, depth=depth, T=4,
            ),  # fmt: skip
            official_params=params,
            arch_names=("spikformer",),
            input_shape=(3, 224, 224),
            description=f"Spikformer-{depth}-{dim} ImageNet (224px, {heads} heads, T=4){note}",
        )
    )


def _cifar(name: str, depth: int, dim: int, heads: int, classes: int, params: int) -> None:
    register_config(
        ModelConfig(
            name=name,
            family="spikformer",
            layout="cifar",
            builder=SpikformerCIFAR,
            kwargs=dict(
                img_size=32, patch_size=4, in_channels=3, num_classes=classes, embed_dim=dim,
                num_heads=heads, mlp_ratio=4.0, depth=depth, T=4,
            ),  # fmt: skip
            official_params=params,
            arch_names=("spikformer",),
            input_shape=(3, 32, 32),
            description=f"Spikformer-{depth}-{dim} CIFAR{classes} (32px, {heads} heads, T=4)",
        )
    )


_imagenet(8, 384, 12, 16_828_312)
_imagenet(6, 512, 8, 23_385_640)
_imagenet(8, 512, 8, 29_705_768, note="; the official registered default")
_imagenet(10, 512, 8, 36_025_896)
_imagenet(8, 768, 12, 66_363_208)
_cifar("spikformer-cifar10-4-384", 4, 384, 12, 10, 9_330_874)
_cifar("spikformer-cifar100-4-384", 4, 384, 12, 100, 9_365_524)
_cifar("spikformer-cifar10-4-256", 4, 256, 8, 10, 4_159_274)
_cifar("spikformer-cifar10-2-384", 2, 384, 12, 10, 5_768_122)

register_config(
    ModelConfig(
        name="spikformer-cifar10dvs-2-256",
        family="spikformer",
        layout="dvs",
        builder=SpikformerDVS,
        kwargs=dict(
            img_size=128, patch_size=16, in_channels=2, num_classes=10, embed_dim=256,
            num_heads=16, mlp_ratio=4.0, depth=2, T=16,
        ),  # fmt: skip
        official_params=2_585_610,
        arch_names=("spikformer",),
        input_shape=(16, 2, 128, 128),
        description="Spikformer-2-256 CIFAR10-DVS (event frames [T=16,2,128,128], 16 heads)",
    )
)

register_config(
    ModelConfig(
        name="spikformer-digits-2-64",
        family="spikformer",
        layout="cifar",
        builder=SpikformerCIFAR,
        kwargs=dict(
            img_size=32, patch_size=4, in_channels=1, num_classes=10, embed_dim=64,
            num_heads=4, mlp_ratio=4.0, depth=2, T=4,
        ),  # fmt: skip
        official_params=None,
        arch_names=("spikformer",),
        input_shape=(1, 32, 32),
        description="hwsearch demo model: Spikformer-2-64, CIFAR layout, trained on the bundled digits dataset",
    )
)
