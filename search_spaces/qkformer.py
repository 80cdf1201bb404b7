"""QKFormer (zhouchenlin2096/QKFormer): hierarchical spiking transformer with token-QK attention.

Two official module trees are reproduced with their exact state_dict keys and operation sequence
(``svit-architectures.md`` §4), so official checkpoints load strictly and compute the official numbers
(on the official test vectors the head input is exactly the official one; the logits can differ in the
last bits only where this CPU's fp32 GEMM rounds differently from the machine that wrote the vectors):

* :class:`QKFormer` follows ``imagenet/qkformer.py`` (``hierarchical_spiking_transformer``): pools in
  ``patch_embed1`` (two) and at the start of ``patch_embed{2,3}``, a ``proj2`` conv in ``patch_embed1``,
  MLP keys ``mlp.fc1_*``/``mlp.fc2_*``, stage-3 attention under ``attn.``, depths 1 + 2 + (L - 3).
* :class:`QKFormerCIFAR` follows ``cifar10/model.py`` = ``cifar100/model.py`` (``spiking_transformer``,
  timm name ``QKFormer``): no pools and no ``proj2`` in ``patch_embed1`` (residual 1x1 conv stride 1),
  the pool at the end of ``patch_embed{2,3}``, MLP keys ``mlp.mlp1_*``/``mlp.mlp2_*``, stage-3 attention
  under ``ssa.``, depths 1 + 1 + (L - 2). **Its constructor forces 8 heads in every stage** whatever
  ``num_heads`` says (the official code overwrites ``num_heads = [8, 8, 8]``); ``num_heads`` is still
  stored unchanged and the heads actually built are in ``stage_heads``.

Beyond the official code, every attention module takes its inner widths from its own q/k/v conv
output channels plus a stored ``num_heads`` (and optional per-head width tuples), and the MLP from its
stored ``c_hidden``; nothing is read from the input's channel count. Physically pruned models (sliced
weights + updated attributes) therefore run with this same forward code. Unpruned, the numbers are those
of the official code (all spike sums are small integers, so fp32 results are exact).

Official quirks reproduced on purpose:

* Stage-3 ``proj_lif`` is called on the folded ``[T*B, C, N]`` tensor, so its "time" axis is T*B (the
  membrane carries over batch elements in t-major order); outputs depend on the batch composition.
* ``imagenet/qkformer.py`` sets ``T=1`` as the default of ``QKFormer_10_*`` but trains with
  ``--time_step 4``; the registered ImageNet configurations here use ``T=4``.

Not reproduced: the official stage-3 attention reshapes its output to ``(T, B, C, W, H)`` (W and H
swapped), which only type-checks for square grids; here it is ``(T, B, C, H, W)``: identical for
square inputs and correct for the ``N' x 1`` token grids of token pruning.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from search_spaces._layers import ATTN_LIF_THRESHOLD, add_residual_branches, lif, trunc_normal_init
from search_spaces._registry import ModelConfig, register_config

__all__ = [
    "MLP",
    "TokenQKAttention",
    "SpikingSelfAttention",
    "TokenSpikingTransformer",
    "SpikingTransformer",
    "PatchEmbedInit",
    "PatchEmbeddingStage",
    "QKFormer",
    "QKFormerCIFAR",
    "CIFAR_FORCED_HEADS",
]

#: Heads per stage that the official CIFAR constructor forces, whatever ``num_heads`` is passed.
CIFAR_FORCED_HEADS = 8

_LAYOUTS = ("imagenet", "cifar")


def _check_layout(layout: str) -> None:
    if layout not in _LAYOUTS:
        raise ValueError(f"unknown QKFormer layout {layout!r}; expected one of {_LAYOUTS}")


def _unfold(x: torch.Tensor, T: int, B: int) -> torch.Tensor:
    """``[T*B, ...]`` -> ``[T, B, ...]``."""
    return x.reshape(T, B, *x.shape[1:])


def _head_sizes(width: int, num_heads: int, sizes: Sequence[int] | None, what: str) -> list[int]:
    """Per-head channel counts: ``sizes`` if given, else ``width`` split evenly into ``num_heads``."""
    if sizes is None:
        if num_heads <= 0 or width % num_heads != 0:
            raise ValueError(f"{what} width {width} is not divisible by num_heads={num_heads}")
        return [width // num_heads] * num_heads
    sizes = [int(s) for s in sizes]
    if len(sizes) != num_heads or sum(sizes) != width or min(sizes) < 0:
        raise ValueError(
            f"{what} per-head widths {tuple(sizes)} do not match num_heads={num_heads} and width {width}"
        )
    return sizes


class MLP(nn.Module):
    """Two 1x1 Conv2d + BN2d + LIF layers on ``[T, B, C, H, W]``.

    Keys ``fc1_*``/``fc2_*`` (ImageNet) or ``mlp1_*``/``mlp2_*`` (CIFAR); ``names`` holds the two
    prefixes. ``c_hidden`` is the inner width used in the reshape (update it when pruning).
    """

    def __init__(self, in_features: int, hidden_features: int, *, layout: str = "imagenet") -> None:
        super().__init__()
        _check_layout(layout)
        first, second = ("fc1", "fc2") if layout == "imagenet" else ("mlp1", "mlp2")
        self.names: tuple[str, str] = (first, second)
        setattr(self, f"{first}_conv", nn.Conv2d(in_features, hidden_features, kernel_size=1, stride=1))
        setattr(self, f"{first}_bn", nn.BatchNorm2d(hidden_features))
        setattr(self, f"{first}_lif", lif())
        setattr(self, f"{second}_conv", nn.Conv2d(hidden_features, in_features, kernel_size=1, stride=1))
        setattr(self, f"{second}_bn", nn.BatchNorm2d(in_features))
        setattr(self, f"{second}_lif", lif())
        self.c_hidden = hidden_features
        self.c_output = in_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, B, _, H, W = x.shape
        first, second = self.names
        x = getattr(self, f"{first}_conv")(x.flatten(0, 1))
        x = getattr(self, f"{first}_bn")(x).reshape(T, B, self.c_hidden, H, W).contiguous()
        x = getattr(self, f"{first}_lif")(x)
        conv2: nn.Conv2d = getattr(self, f"{second}_conv")
        x = conv2(x.flatten(0, 1))
        x = getattr(self, f"{second}_bn")(x).reshape(T, B, conv2.out_channels, H, W).contiguous()
        return getattr(self, f"{second}_lif")(x)


class TokenQKAttention(nn.Module):
    """Token-QK attention (official ``Token_QK_Attention``), keys ``q_conv/q_bn/k_conv/k_bn/proj_*``.

    q, k = LIF(BN(Conv1d(x))) split channel-major into heads; mask = ``attn_lif`` (threshold 0.5) of the
    sum of q over each head's channels (one value per head and token); y = mask * k -> proj -> BN -> LIF.
    Widths come from ``q_conv``/``k_conv`` output channels and ``num_heads``; ``q_head_widths`` /
    ``k_head_widths`` (None = even split) allow uneven heads after pruning, and ``proj_conv`` input must
    equal the k width.
    """

    def __init__(self, dim: int, num_heads: int = 8) -> None:
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"dim {dim} should be divided by num_heads {num_heads}.")
        self.dim = dim
        self.num_heads = num_heads
        self.q_head_widths: tuple[int, ...] | None = None
        self.k_head_widths: tuple[int, ...] | None = None

        self.q_conv = nn.Conv1d(dim, dim, kernel_size=1, stride=1, bias=False)
        self.q_bn = nn.BatchNorm1d(dim)
        self.q_lif = lif()
        self.k_conv = nn.Conv1d(dim, dim, kernel_size=1, stride=1, bias=False)
        self.k_bn = nn.BatchNorm1d(dim)
        self.k_lif = lif()
        self.attn_lif = lif(ATTN_LIF_THRESHOLD)
        self.proj_conv = nn.Conv1d(dim, dim, kernel_size=1, stride=1)
        self.proj_bn = nn.BatchNorm1d(dim)
        self.proj_lif = lif()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, B, _, H, W = x.shape
        x = x.flatten(3)
        N = x.shape[-1]
        x_for_qk = x.flatten(0, 1)
        h = self.num_heads
        wq, wk = self.q_conv.out_channels, self.k_conv.out_channels

        q = self.q_lif(self.q_bn(self.q_conv(x_for_qk)).reshape(T, B, wq, N))
        k = self.k_lif(self.k_bn(self.k_conv(x_for_qk)).reshape(T, B, wk, N))

        if self.q_head_widths is None and self.k_head_widths is None:
            # Official sequence: even heads, channel-major split.
            _head_sizes(wq, h, None, "token-attention q")
            _head_sizes(wk, h, None, "token-attention k")
            q = q.unsqueeze(2).reshape(T, B, h, wq // h, N)
            k = k.unsqueeze(2).reshape(T, B, h, wk // h, N)
            attn = self.attn_lif(torch.sum(q, dim=3, keepdim=True))  # [T, B, h, 1, N]
            x = torch.mul(attn, k).flatten(2, 3)  # [T, B, wk, N]
        else:
            # Uneven heads: per-head sums of q, mask repeated over each head's k channels.
            q_sizes = _head_sizes(wq, h, self.q_head_widths, "token-attention q")
            k_sizes = _head_sizes(wk, h, self.k_head_widths, "token-attention k")
            q_sum = torch.stack([part.sum(dim=2) for part in q.split(q_sizes, dim=2)], dim=2)
            attn = self.attn_lif(q_sum.unsqueeze(3))  # [T, B, h, 1, N]
            repeats = torch.tensor(k_sizes, device=x.device)
            x = torch.mul(attn.squeeze(3).repeat_interleave(repeats, dim=2), k)  # [T, B, wk, N]

        x = self.proj_bn(self.proj_conv(x.flatten(0, 1)))
        x = x.reshape(T, B, self.proj_conv.out_channels, H, W)
        return self.proj_lif(x)


class SpikingSelfAttention(nn.Module):
    """Stage-3 spiking self-attention (official ``Spiking_Self_Attention``, Spikformer-ImageNet style).

    y = (q @ (kᵀ @ v)) * 0.125 per head (kᵀ @ v first), head-major back to channels -> ``attn_lif`` (0.5)
    -> proj Conv1d -> BN -> ``proj_lif`` (called on ``[T*B, C, N]`` as in the official code). q/k heads
    have width W_qk / h, v heads W_v / h (``qk_head_widths`` / ``v_head_widths`` for uneven heads); the
    output has h * d_v channels, which must equal ``proj_conv`` input. ``qkv_mp`` is unused (no params).
    """

    def __init__(self, dim: int, num_heads: int = 8) -> None:
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"dim {dim} should be divided by num_heads {num_heads}.")
        self.dim = dim
        self.num_heads = num_heads
        self.scale = 0.125
        self.qk_head_widths: tuple[int, ...] | None = None
        self.v_head_widths: tuple[int, ...] | None = None

        self.q_conv = nn.Conv1d(dim, dim, kernel_size=1, stride=1, bias=False)
        self.q_bn = nn.BatchNorm1d(dim)
        self.q_lif = lif()
        self.k_conv = nn.Conv1d(dim, dim, kernel_size=1, stride=1, bias=False)
        self.k_bn = nn.BatchNorm1d(dim)
        self.k_lif = lif()
        self.v_conv = nn.Conv1d(dim, dim, kernel_size=1, stride=1, bias=False)
        self.v_bn = nn.BatchNorm1d(dim)
        self.v_lif = lif()
        self.attn_lif = lif(ATTN_LIF_THRESHOLD)
        self.proj_conv = nn.Conv1d(dim, dim, kernel_size=1, stride=1)
        self.proj_bn = nn.BatchNorm1d(dim)
        self.proj_lif = lif()
        self.qkv_mp = nn.MaxPool1d(4)  # built but never called, as in the official code

    @staticmethod
    def _branch(
        conv: nn.Conv1d, bn: nn.BatchNorm1d, neuron: nn.Module, x: torch.Tensor, T: int, B: int
    ) -> torch.Tensor:
        """LIF(BN(conv(x))) for folded ``x`` ``[T*B, C, N]`` -> spikes ``[T, B, W, N]``."""
        out = bn(conv(x))
        return neuron(out.reshape(T, B, conv.out_channels, out.shape[-1]).contiguous())  # [T, B, W, N]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, B, _, H, W = x.shape
        x = x.flatten(3)
        N = x.shape[-1]
        x_for_qkv = x.flatten(0, 1)
        h = self.num_heads
        wq, wk, wv = self.q_conv.out_channels, self.k_conv.out_channels, self.v_conv.out_channels
        if wq != wk:
            raise ValueError(f"SSA q width {wq} != k width {wk}: q and k channels are contracted together")

        q = self._branch(self.q_conv, self.q_bn, self.q_lif, x_for_qkv, T, B)
        k = self._branch(self.k_conv, self.k_bn, self.k_lif, x_for_qkv, T, B)
        v = self._branch(self.v_conv, self.v_bn, self.v_lif, x_for_qkv, T, B)

        if self.qk_head_widths is None and self.v_head_widths is None:
            # Official sequence: [T, B, C, N] -> [T, B, N, C] -> [T, B, N, h, d] -> [T, B, h, N, d].
            d_qk = _head_sizes(wq, h, None, "SSA q/k")[0]
            d_v = _head_sizes(wv, h, None, "SSA v")[0]
            q = q.transpose(-1, -2).reshape(T, B, N, h, d_qk).permute(0, 1, 3, 2, 4).contiguous()
            k = k.transpose(-1, -2).reshape(T, B, N, h, d_qk).permute(0, 1, 3, 2, 4).contiguous()
            v = v.transpose(-1, -2).reshape(T, B, N, h, d_v).permute(0, 1, 3, 2, 4).contiguous()
            x = k.transpose(-2, -1) @ v  # [T, B, h, d_qk, d_v]
            x = (q @ x) * self.scale  # [T, B, h, N, d_v]
            x = x.transpose(3, 4).reshape(T, B, h * d_v, N).contiguous()
        else:
            # Uneven heads: one matmul pair per head, same order, concatenated head-major.
            qk_sizes = _head_sizes(wq, h, self.qk_head_widths, "SSA q/k")
            v_sizes = _head_sizes(wv, h, self.v_head_widths, "SSA v")
            outs = []
            for qj, kj, vj in zip(q.split(qk_sizes, 2), k.split(qk_sizes, 2), v.split(v_sizes, 2)):
                kv = kj @ vj.transpose(-1, -2)  # [T, B, d_qk, d_v] = kᵀ @ v
                outs.append(((qj.transpose(-1, -2) @ kv) * self.scale).transpose(-1, -2))  # [T, B, d_v, N]
            x = torch.cat(outs, dim=2).contiguous()  # [T, B, wv, N]

        x = self.attn_lif(x)
        x = x.flatten(0, 1)
        x = self.proj_lif(self.proj_bn(self.proj_conv(x)))  # official: LIF over the folded T*B axis
        return x.reshape(T, B, self.proj_conv.out_channels, H, W)


class TokenSpikingTransformer(nn.Module):
    """Stage-1/2 block: ``x = x + tssa(x); x = x + mlp(x)``.

    Depth pruning may remove a branch (``tssa`` or ``mlp`` set to ``None``): the residual then carries
    ``x`` through unchanged.
    """

    tssa: TokenQKAttention | None
    mlp: MLP | None

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, *, layout: str = "imagenet") -> None:
        super().__init__()
        self.tssa = TokenQKAttention(dim, num_heads)
        self.mlp = MLP(dim, int(dim * mlp_ratio), layout=layout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return add_residual_branches(x, self.tssa, self.mlp)


class SpikingTransformer(nn.Module):
    """Stage-3 block: ``x = x + attn(x); x = x + mlp(x)``; the attention is ``attn`` (ImageNet) or
    ``ssa`` (CIFAR), named in ``attn_name``. Depth pruning may set either branch to ``None`` (skipped)."""

    mlp: MLP | None

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, *, layout: str = "imagenet") -> None:
        super().__init__()
        _check_layout(layout)
        self.attn_name = "attn" if layout == "imagenet" else "ssa"
        setattr(self, self.attn_name, SpikingSelfAttention(dim, num_heads))
        self.mlp = MLP(dim, int(dim * mlp_ratio), layout=layout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return add_residual_branches(x, getattr(self, self.attn_name), self.mlp)


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

        x_feat = x
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
        x_feat = x

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
        return self.head(x.mean(0))


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


# --- registered official configurations -------------------------------------------------------------

_IMAGENET_ARCH = ("QKFormer_10_384", "QKFormer_10_512", "QKFormer_10_768", "hierarchical_spiking_transformer")
_CIFAR_ARCH = ("QKFormer", "qkformer", "spiking_transformer")

for _dim, _heads, _params in ((384, 6, 16_473_688), (512, 8, 29_079_336), (768, 12, 64_962_760)):
    register_config(
        ModelConfig(
            name=f"qkformer-10-{_dim}",
            family="qkformer",
            layout="imagenet",
            builder=QKFormer,
            kwargs=dict(
                img_size=224, patch_size=16, in_channels=3, num_classes=1000, embed_dim=_dim,
                num_heads=_heads, mlp_ratio=4, depth=10, T=4,
            ),
            official_params=_params,
            arch_names=_IMAGENET_ARCH,
            input_shape=(3, 224, 224),
            description=f"QKFormer-10-{_dim} ImageNet ({_heads} heads, T=4 as trained; official default T=1)",
        )
    )

for _dataset, _classes, _params in (("cifar10", 10, 6_706_234), ("cifar100", 100, 6_740_884)):
    register_config(
        ModelConfig(
            name=f"qkformer-{_dataset}-4-384",
            family="qkformer",
            layout="cifar",
            builder=QKFormerCIFAR,
            kwargs=dict(
                img_size=32, patch_size=4, in_channels=3, num_classes=_classes, embed_dim=384,
                num_heads=8, mlp_ratio=4, depth=4, T=4,
            ),
            official_params=_params,
            arch_names=_CIFAR_ARCH,
            input_shape=(3, 32, 32),
            description=f"QKFormer-4-384 {_dataset.upper()} (8 heads forced, T=4)",
        )
    )
