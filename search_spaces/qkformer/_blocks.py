"""QKFormer's blocks: the spiking MLP, token-QK attention (stages 1-2), spiking self-attention (stage 3)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from search_spaces._layers import ATTN_LIF_THRESHOLD, add_residual_branches, lif

__all__ = ["CIFAR_FORCED_HEADS", "MLP", "TokenQKAttention", "SpikingSelfAttention", "TokenSpikingTransformer", "SpikingTransformer"]


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
        x = getattr(self, f"{second}_lif")(x)
        return x


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
        x = self.proj_lif(x)
        return x


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
        out: torch.Tensor = bn(conv(x))
        spikes: torch.Tensor = neuron(out.reshape(T, B, conv.out_channels, out.shape[-1]).contiguous())
        return spikes  # [T, B, W, N]

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
            # Tensor.split is unannotated in torch
            for qj, kj, vj in zip(q.split(qk_sizes, 2), k.split(qk_sizes, 2), v.split(v_sizes, 2)):  # type: ignore[no-untyped-call]
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
