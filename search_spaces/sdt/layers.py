"""The Spike-driven Transformer's parts: the MS stem (``MSSPS``), spike-driven attention, MLP and block."""

from __future__ import annotations

import torch
import torch.nn as nn
from spikingjelly.activation_based import neuron

from search_spaces._layers import ATTN_LIF_THRESHOLD, LIF_TAU, LIF_THRESHOLD, lif, neuron_settings

__all__ = ["SPIKE_MODES", "MSSPS", "MSSSA", "MSMLP", "MSBlock"]


#: Neuron kinds the official code supports for ImageNet/CIFAR (``alif``/``blif`` map to LIF there too).
SPIKE_MODES = ("lif", "plif")


def _neuron(spike_mode: str, v_threshold: float = LIF_THRESHOLD) -> neuron.BaseNode:
    """The official neuron for ``spike_mode``: LIF (tau 2) or PLIF (init_tau 2), hard reset, detach_reset."""
    if spike_mode == "lif":
        return lif(v_threshold)
    if spike_mode == "plif":
        return neuron.ParametricLIFNode(init_tau=LIF_TAU, **neuron_settings(v_threshold))
    raise ValueError(f"spike_mode must be one of {SPIKE_MODES}, got {spike_mode!r}")


def _pool() -> nn.MaxPool2d:
    return nn.MaxPool2d(kernel_size=3, stride=2, padding=1, dilation=1, ceil_mode=False)


class MSSPS(nn.Module):
    """Spiking patch splitting (official ``MS_SPS``): four 3×3 conv stages and a membrane-shortcut RPE.

    ``pooling_stat[i] == "1"`` max-pools after stage ``i``. Stages 0–2 pool the spikes; stage 3 pools the
    BN output, which is ``x_feat`` (pre-LIF); the output is ``rpe_bn(rpe_conv(proj_lif3(x_feat))) + x_feat``
    (real-valued). ``rpe_lif`` is built but never called, as in the official code.
    """

    def __init__(
        self,
        *,
        img_size: int = 224,
        patch_size: int = 16,
        in_channels: int = 3,
        embed_dim: int = 512,
        pooling_stat: str = "1111",
        spike_mode: str = "lif",
    ) -> None:
        super().__init__()
        if len(pooling_stat) != 4 or set(pooling_stat) - {"0", "1"}:
            raise ValueError(f"pooling_stat must be 4 characters of '0'/'1', got {pooling_stat!r}")
        self.img_size = img_size
        self.patch_size = patch_size
        self.in_channels = in_channels
        self.embed_dim = embed_dim
        self.pooling_stat = pooling_stat
        self.spike_mode = spike_mode
        d = embed_dim
        self.proj_conv = nn.Conv2d(in_channels, d // 8, kernel_size=3, stride=1, padding=1, bias=False)
        self.proj_bn = nn.BatchNorm2d(d // 8)
        self.proj_lif = _neuron(spike_mode)
        self.maxpool = _pool()
        self.proj_conv1 = nn.Conv2d(d // 8, d // 4, kernel_size=3, stride=1, padding=1, bias=False)
        self.proj_bn1 = nn.BatchNorm2d(d // 4)
        self.proj_lif1 = _neuron(spike_mode)
        self.maxpool1 = _pool()
        self.proj_conv2 = nn.Conv2d(d // 4, d // 2, kernel_size=3, stride=1, padding=1, bias=False)
        self.proj_bn2 = nn.BatchNorm2d(d // 2)
        self.proj_lif2 = _neuron(spike_mode)
        self.maxpool2 = _pool()
        self.proj_conv3 = nn.Conv2d(d // 2, d, kernel_size=3, stride=1, padding=1, bias=False)
        self.proj_bn3 = nn.BatchNorm2d(d)
        self.proj_lif3 = _neuron(spike_mode)
        self.maxpool3 = _pool()
        self.rpe_conv = nn.Conv2d(d, d, kernel_size=3, stride=1, padding=1, bias=False)
        self.rpe_bn = nn.BatchNorm2d(d)
        self.rpe_lif = _neuron(spike_mode)  # built by the official code, never called

    def _stage(self, x: torch.Tensor, T: int, B: int, conv: nn.Conv2d, bn: nn.BatchNorm2d,
               lif_: nn.Module, pool: nn.MaxPool2d, do_pool: bool) -> torch.Tensor:
        """conv → BN on ``[TB,…]``, LIF on ``[T,B,…]``, then the optional max-pool on ``[TB,…]``."""
        x = bn(conv(x))
        x = lif_(x.reshape(T, B, *x.shape[1:]).contiguous())
        x = x.flatten(0, 1).contiguous()
        return pool(x) if do_pool else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[T, B, C_in, H, W]`` → ``[T, B, D, H', W']`` (real-valued)."""
        T, B = x.shape[:2]
        p = self.pooling_stat
        x = x.flatten(0, 1)
        x = self._stage(x, T, B, self.proj_conv, self.proj_bn, self.proj_lif, self.maxpool, p[0] == "1")
        x = self._stage(x, T, B, self.proj_conv1, self.proj_bn1, self.proj_lif1, self.maxpool1, p[1] == "1")
        x = self._stage(x, T, B, self.proj_conv2, self.proj_bn2, self.proj_lif2, self.maxpool2, p[2] == "1")
        x = self.proj_bn3(self.proj_conv3(x))
        if p[3] == "1":
            x = self.maxpool3(x)
        x_feat = x
        x = self.proj_lif3(x.reshape(T, B, *x.shape[1:]).contiguous())
        x = x.flatten(0, 1).contiguous()
        x = self.rpe_bn(self.rpe_conv(x))
        x = x + x_feat
        return x.reshape(T, B, *x.shape[1:]).contiguous()


class MSSSA(nn.Module):
    """Spike-driven self-attention (official ``MS_SSA_Conv``), membrane shortcut included.

    s = shortcut_lif(x); q, k, v = LIF(BN(conv1×1(s))) split into ``num_heads`` heads ``[T,B,h,N,d]``;
    kv = talking_heads_lif(Σ_N k∘v) (threshold 0.5); y = q∘kv → proj conv → proj BN; returns y + x.
    The inner width W is ``q_conv.out_channels`` (k and v must match; d = W // num_heads), never the input
    channel count. ``attn_lif`` and ``talking_heads`` are built but never called, as in the official code.
    """

    def __init__(self, *, dim: int, num_heads: int = 8, spike_mode: str = "lif") -> None:
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"dim {dim} must be divisible by num_heads {num_heads}")
        self.dim = dim
        self.num_heads = num_heads
        self.spike_mode = spike_mode
        self.q_conv = nn.Conv2d(dim, dim, kernel_size=1, stride=1, bias=False)
        self.q_bn = nn.BatchNorm2d(dim)
        self.q_lif = _neuron(spike_mode)
        self.k_conv = nn.Conv2d(dim, dim, kernel_size=1, stride=1, bias=False)
        self.k_bn = nn.BatchNorm2d(dim)
        self.k_lif = _neuron(spike_mode)
        self.v_conv = nn.Conv2d(dim, dim, kernel_size=1, stride=1, bias=False)
        self.v_bn = nn.BatchNorm2d(dim)
        self.v_lif = _neuron(spike_mode)
        self.attn_lif = _neuron(spike_mode, ATTN_LIF_THRESHOLD)  # built by the official code, never called
        self.talking_heads = nn.Conv1d(num_heads, num_heads, kernel_size=1, stride=1, bias=False)  # dead
        self.talking_heads_lif = _neuron(spike_mode, ATTN_LIF_THRESHOLD)
        self.proj_conv = nn.Conv2d(dim, dim, kernel_size=1, stride=1)
        self.proj_bn = nn.BatchNorm2d(dim)
        self.shortcut_lif = _neuron(spike_mode)

    def _heads(self, s: torch.Tensor, conv: nn.Conv2d, bn: nn.BatchNorm2d, lif_: nn.Module,
               T: int, B: int, H: int, W: int) -> torch.Tensor:
        """LIF(BN(conv(s))) as ``[T, B, h, N, d]`` (channel c in head c // d)."""
        width = conv.out_channels
        y: torch.Tensor = lif_(bn(conv(s)).reshape(T, B, width, H, W).contiguous())
        return (
            y.flatten(3)
            .transpose(-1, -2)
            .reshape(T, B, H * W, self.num_heads, width // self.num_heads)
            .permute(0, 1, 3, 2, 4)
            .contiguous()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[T, B, D, H, W]`` → ``[T, B, D, H, W]``."""
        T, B, C, H, W = x.shape
        width = self.q_conv.out_channels
        if self.k_conv.out_channels != width or self.v_conv.out_channels != width:
            raise ValueError(
                f"q/k/v widths must be equal in SDT attention, got {width}, {self.k_conv.out_channels}, "
                f"{self.v_conv.out_channels}"
            )
        if width % self.num_heads != 0:
            raise ValueError(f"q/k/v width {width} is not divisible by num_heads {self.num_heads}")
        identity = x
        s = self.shortcut_lif(x).flatten(0, 1)
        q = self._heads(s, self.q_conv, self.q_bn, self.q_lif, T, B, H, W)
        k = self._heads(s, self.k_conv, self.k_bn, self.k_lif, T, B, H, W)
        v = self._heads(s, self.v_conv, self.v_bn, self.v_lif, T, B, H, W)
        kv = k.mul(v).sum(dim=-2, keepdim=True)  # [T, B, h, 1, d]
        kv = self.talking_heads_lif(kv)
        y: torch.Tensor = q.mul(kv)  # [T, B, h, N, d]
        y = y.transpose(3, 4).reshape(T, B, width, H, W).contiguous()
        y = self.proj_bn(self.proj_conv(y.flatten(0, 1))).reshape(T, B, C, H, W).contiguous()
        return y + identity


class MSMLP(nn.Module):
    """Spiking MLP (official ``MS_MLP_Conv``) with the LIF before each 1×1 conv and a membrane shortcut.

    z = fc1_bn(fc1_conv(fc1_lif(x))); if ``res``: z = z + x and the shortcut becomes z;
    out = fc2_bn(fc2_conv(fc2_lif(z))) + shortcut. ``res`` is set at construction when the hidden width
    equals the input width (never for mlp_ratio 4) and is a plain attribute: pruning must not change it.
    ``c_hidden`` (fc1 output width) is used in the reshape.
    """

    def __init__(self, *, in_features: int, hidden_features: int | None = None,
                 out_features: int | None = None, spike_mode: str = "lif") -> None:
        super().__init__()
        out_features = out_features or in_features
        hidden_features = hidden_features or in_features
        self.res = in_features == hidden_features
        self.spike_mode = spike_mode
        self.fc1_conv = nn.Conv2d(in_features, hidden_features, kernel_size=1, stride=1)
        self.fc1_bn = nn.BatchNorm2d(hidden_features)
        self.fc1_lif = _neuron(spike_mode)
        self.fc2_conv = nn.Conv2d(hidden_features, out_features, kernel_size=1, stride=1)
        self.fc2_bn = nn.BatchNorm2d(out_features)
        self.fc2_lif = _neuron(spike_mode)
        self.c_hidden = hidden_features
        self.c_output = out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[T, B, D, H, W]`` → ``[T, B, D, H, W]``."""
        T, B, C, H, W = x.shape
        identity = x
        z: torch.Tensor = self.fc1_lif(x)
        z = self.fc1_conv(z.flatten(0, 1))
        z = self.fc1_bn(z).reshape(T, B, self.c_hidden, H, W).contiguous()
        if self.res:
            z = identity + z
            identity = z
        z = self.fc2_lif(z)
        z = self.fc2_conv(z.flatten(0, 1))
        z = self.fc2_bn(z).reshape(T, B, C, H, W).contiguous()
        return z + identity


class MSBlock(nn.Module):
    """One SDT block (official ``MS_Block_Conv``): ``mlp(attn(x))``, both with their own shortcut.

    Depth pruning may remove a branch (``attn`` or ``mlp`` set to ``None``): its shortcut then carries
    ``x`` through unchanged.
    """

    attn: MSSSA | None
    mlp: MSMLP | None

    def __init__(self, *, dim: int, num_heads: int, mlp_ratio: float = 4.0, spike_mode: str = "lif") -> None:
        super().__init__()
        self.attn = MSSSA(dim=dim, num_heads=num_heads, spike_mode=spike_mode)
        self.drop_path = nn.Identity()  # built (DropPath/Identity) but never called by the official code
        self.mlp = MSMLP(in_features=dim, hidden_features=int(dim * mlp_ratio), spike_mode=spike_mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[T, B, D, H, W]`` → ``[T, B, D, H, W]``."""
        if self.attn is not None:
            x = self.attn(x)
        if self.mlp is not None:
            x = self.mlp(x)
        return x
