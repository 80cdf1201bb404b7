"""Closed-form layer tables of the three SViT families, written from ``svit-architectures.md``.

Each builder walks the official forward of one configuration (constructor kwargs) and records every
layer with widths as variables named after the prunable groups (``search_spaces/_*_groups.py``):
``patch_embed.c1..c3``, ``embed``, ``block.{i}.attn.heads|qk|v`` (SDT ``qkv``), ``block.{i}.mlp.hidden``,
QKFormer ``stage1..3``, ``patch_embed{s}.inner[1]``, ``stage{s}.{j}.tssa.heads|q|k``; depth groups
``block`` / ``stage{s}.blocks`` (whole blocks) and ``branches`` (attention, MLP of each block in order).
Nothing here builds a model.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from costmodels._poly import Poly
from costmodels._spec import Builder
from search_spaces.geometry import pair, pool_out

__all__ = ["FAMILY_BUILDERS", "TOKEN_SCORE_KEY", "build_spec"]

HW = tuple[int, int]


def _area(hw: HW) -> int:
    return hw[0] * hw[1]


def _sps_convs(b: Builder, widths: list[Poly | int], sizes: list[HW], lif_sizes: list[HW], *,
               plif: int = 0) -> None:
    """SPS conv0..conv3 (3×3, no bias) + BN + LIF; conv i runs at ``sizes[i]``, its LIF at ``lif_sizes[i]``."""
    pe = "patch_embed"
    for i, suffix in enumerate(["", "1", "2", "3"]):
        b.conv(f"{pe}.proj_conv{suffix}", widths[i], widths[i + 1], k=9, positions=_area(sizes[i]))
        b.norm(f"{pe}.proj_bn{suffix}", widths[i + 1])
        b.lif(f"{pe}.proj_lif{suffix}", widths[i + 1] * _area(lif_sizes[i]), params=plif)


def _select(b: Builder, p: str, N: int, alive: Poly, D: Poly) -> Poly:
    """Token group before block ``p``: the package merge (one matmul, T·D·m MACs) and, for the learned
    selector, its scorer (``proj`` once per image on the time mean, ``mix``); returns the block's tokens."""
    from search_spaces.tokens import LEARNED, SELECTOR_HEADS

    tokens, merged, entering, active = b.tokens(p, N, alive)
    if b.token_score == LEARNED:
        b.linear(f"{p}.token_select.scorer.proj", D, SELECTOR_HEADS, tokens=entering, per_image=True, alive=active)
        b.param(f"{p}.token_select.scorer.mix", SELECTOR_HEADS, alive=active)
    b.matmul(f"{p}.token_select.matmul1", D * merged)
    return tokens


def _ssa(b: Builder, a: str, D: Poly, N: Poly | int, h0: int, d0: int, *, alive: Poly, order: str, linear: bool = False) -> None:
    """Spikformer-style SSA at prefix ``a``: q/k/v (+BN+LIF), two matmuls, attn_lif, proj (+BN+LIF)."""
    heads = b.channel(f"{a}.heads", h0)
    dqk = b.channel(f"{a}.qk", d0, partitions=h0)
    dv = b.channel(f"{a}.v", d0, partitions=h0)
    wqk, wv = b.derived(heads * dqk), b.derived(heads * dv)
    for name, width in (("q", wqk), ("k", wqk), ("v", wv)):
        if linear:
            b.linear(f"{a}.{name}_linear", D, width, tokens=N, bias=True, alive=alive)
        else:
            b.conv(f"{a}.{name}_conv", D, width, positions=N, alive=alive)
        b.norm(f"{a}.{name}_bn", width, alive=alive)
        b.lif(f"{a}.{name}_lif", width * N, alive=alive)
    if order == "q(kv)":  # kᵀ@v: per head d_qk·N·d_v; q@(kᵀv): N·d_qk·d_v
        b.matmul(f"{a}.matmul1", wqk * dv * N, alive=alive)
        b.matmul(f"{a}.matmul2", wqk * dv * N, alive=alive)
    else:  # q@kᵀ: N·d_qk·N; (qkᵀ)@v: N·N·d_v
        b.matmul(f"{a}.matmul1", wqk * (N * N), alive=alive)
        b.matmul(f"{a}.matmul2", wv * (N * N), alive=alive)
    b.lif(f"{a}.attn_lif", wv * N, alive=alive)
    if linear:
        b.linear(f"{a}.proj_linear", wv, D, tokens=N, bias=True, alive=alive)
    else:
        b.conv(f"{a}.proj_conv", wv, D, positions=N, bias=True, alive=alive)
    b.norm(f"{a}.proj_bn", D, alive=alive)
    b.lif(f"{a}.proj_lif", D * N, alive=alive)


def _mlp(b: Builder, m: str, D: Poly, N: Poly | int, hidden: int, *, alive: Poly, names: tuple[str, str] = ("fc1", "fc2"),
         suffix: str = "conv") -> None:
    """fc1 (+bias) → BN → LIF → fc2 (+bias) → BN → LIF on N tokens; hidden width is ``{m}.hidden``."""
    M = b.channel(f"{m}.hidden", hidden)
    first, second = names
    for name, cin, cout in ((first, D, M), (second, M, D)):
        if suffix == "linear":
            b.linear(f"{m}.{name}_linear", cin, cout, tokens=N, bias=True, alive=alive)
        else:
            b.conv(f"{m}.{name}_conv", cin, cout, positions=N, bias=True, alive=alive)
        b.norm(f"{m}.{name}_bn", cout, alive=alive)
        b.lif(f"{m}.{name}_lif", cout * N, alive=alive)


def _head(b: Builder, D: Poly, K: int, *, per_image: bool) -> None:
    if K > 0:
        b.linear("head", D, K, tokens=1, bias=True, per_image=per_image)


def spikformer(b: Builder, kw: Mapping[str, Any]) -> None:
    """Spikformer, all three layouts (``svit-architectures.md`` §2)."""
    D0, h0, L, K = int(kw["embed_dim"]), int(kw["num_heads"]), int(kw["depth"]), int(kw["num_classes"])
    M0 = int(D0 * kw["mlp_ratio"])
    s0 = pair(kw["img_size"])
    if b.layout == "cifar":  # pools after conv2 and conv3
        sizes = [s0, s0, s0, pool_out(s0)]
        grid = pool_out(sizes[3])
    else:  # ImageNet, DVS: a pool after every conv
        sizes = [s0]
        for _ in range(3):
            sizes.append(pool_out(sizes[-1]))
        grid = pool_out(sizes[3])
    N = _area(grid)
    c1, c2, c3 = (b.channel(f"patch_embed.c{i}", D0 // f) for i, f in ((1, 8), (2, 4), (3, 2)))
    D = b.channel("embed", D0)
    _sps_convs(b, [int(kw["in_channels"]), c1, c2, c3, D], sizes, sizes)
    b.conv("patch_embed.rpe_conv", D, D, k=9, positions=N)
    b.norm("patch_embed.rpe_bn", D)
    b.lif("patch_embed.rpe_lif", D * N)
    scopes = [f"block.{i}" for i in range(L)]
    blocks, branches = b.depth("block", L, scopes), b.depth("branches", 2 * L, [s for s in scopes for _ in (0, 1)])
    linear = b.layout == "cifar"
    for i in range(L):
        p, alive = f"block.{i}", blocks[i]
        Ni = _select(b, p, N, alive, D)
        b.norm(f"{p}.norm1", D, alive=alive, live=False)
        _ssa(b, f"{p}.attn", D, Ni, h0, D0 // h0, alive=b.derived(alive * branches[2 * i]), linear=linear,
             order="q(kv)" if b.layout == "imagenet" else "(qk)v")
        b.norm(f"{p}.norm2", D, alive=alive, live=False)
        _mlp(b, f"{p}.mlp", D, Ni, M0, alive=b.derived(alive * branches[2 * i + 1]),
             suffix="linear" if linear else "conv")
    _head(b, D, K, per_image=True)
    if b.layout == "dvs":
        patch = pair(kw["patch_size"])
        b.param("pos_embed", D * ((s0[0] // patch[0]) * (s0[1] // patch[1])), live=False)
        b.norm("norm", D, live=False)


def sdt(b: Builder, kw: Mapping[str, Any]) -> None:
    """Spike-driven Transformer (``svit-architectures.md`` §3): LIF before each conv, no matmuls."""
    D0, h0, L, K = int(kw["embed_dim"]), int(kw["num_heads"]), int(kw["depth"]), int(kw["num_classes"])
    M0 = int(D0 * kw["mlp_ratio"])
    pool = [c == "1" for c in str(kw.get("pooling_stat", "1111"))]
    plif = 1 if kw.get("spike_mode", "lif") == "plif" else 0  # ParametricLIFNode: one scalar ``w`` each
    sizes = [pair(kw["img_size"])]
    for i in range(3):
        sizes.append(pool_out(sizes[-1]) if pool[i] else sizes[-1])
    grid = pool_out(sizes[3]) if pool[3] else sizes[3]
    N = _area(grid)
    c1, c2, c3 = (b.channel(f"patch_embed.c{i}", D0 // f) for i, f in ((1, 8), (2, 4), (3, 2)))
    D = b.channel("embed", D0)
    _sps_convs(b, [int(kw["in_channels"]), c1, c2, c3, D], sizes, [*sizes[:3], grid], plif=plif)
    b.conv("patch_embed.rpe_conv", D, D, k=9, positions=N)
    b.norm("patch_embed.rpe_bn", D)
    b.lif("patch_embed.rpe_lif", 0, params=plif, called=False)
    scopes = [f"block.{i}" for i in range(L)]
    blocks, branches = b.depth("block", L, scopes), b.depth("branches", 2 * L, [s for s in scopes for _ in (0, 1)])
    for i in range(L):
        a, m = f"block.{i}.attn", f"block.{i}.mlp"
        alive_a, alive_m = b.derived(blocks[i] * branches[2 * i]), b.derived(blocks[i] * branches[2 * i + 1])
        Ni = _select(b, f"block.{i}", N, blocks[i], D)
        heads = b.channel(f"{a}.heads", h0)
        W = b.derived(heads * b.channel(f"{a}.qkv", D0 // h0, partitions=h0))
        b.lif(f"{a}.shortcut_lif", D * Ni, alive=alive_a, params=plif)
        for name in ("q", "k", "v"):
            b.conv(f"{a}.{name}_conv", D, W, positions=Ni, alive=alive_a)
            b.norm(f"{a}.{name}_bn", W, alive=alive_a)
            b.lif(f"{a}.{name}_lif", W * Ni, alive=alive_a, params=plif)
        b.lif(f"{a}.attn_lif", 0, alive=alive_a, params=plif, called=False)
        b.conv(f"{a}.talking_heads", heads, heads, positions=0, alive=alive_a, live=False)
        b.lif(f"{a}.talking_heads_lif", W, alive=alive_a, params=plif)  # Σ_N(k∘v): [T,B,h,1,d]
        b.conv(f"{a}.proj_conv", W, D, positions=Ni, bias=True, alive=alive_a)
        b.norm(f"{a}.proj_bn", D, alive=alive_a)
        M = b.channel(f"{m}.hidden", M0)
        b.lif(f"{m}.fc1_lif", D * Ni, alive=alive_m, params=plif)
        b.conv(f"{m}.fc1_conv", D, M, positions=Ni, bias=True, alive=alive_m)
        b.norm(f"{m}.fc1_bn", M, alive=alive_m)
        b.lif(f"{m}.fc2_lif", M * Ni, alive=alive_m, params=plif)
        b.conv(f"{m}.fc2_conv", M, D, positions=Ni, bias=True, alive=alive_m)
        b.norm(f"{m}.fc2_bn", D, alive=alive_m)
    b.lif("head_lif", D, params=plif)
    _head(b, D, K, per_image=False)


def _qk_patch_embed1(b: Builder, kw: Mapping[str, Any], e1: int, s1: Poly) -> HW:
    """``patch_embed1`` at width e1 = D/4; returns the stage-1 grid."""
    pe, imagenet = "patch_embed1", b.layout == "imagenet"
    s0 = pair(kw["img_size"])
    p0 = b.channel(f"{pe}.inner", e1 // 2)
    g0 = pool_out(s0) if imagenet else s0  # conv → BN → (pool) → LIF
    b.conv(f"{pe}.proj_conv", int(kw["in_channels"]), p0, k=9, positions=_area(s0))
    b.norm(f"{pe}.proj_bn", p0)
    b.lif(f"{pe}.proj_lif", p0 * _area(g0))
    if imagenet:
        p1 = b.channel(f"{pe}.inner1", e1)
        grid = pool_out(g0)
        b.conv(f"{pe}.proj1_conv", p0, p1, k=9, positions=_area(g0))
        b.norm(f"{pe}.proj1_bn", p1)
        b.lif(f"{pe}.proj1_lif", p1 * _area(grid))
        b.conv(f"{pe}.proj2_conv", p1, s1, k=9, positions=_area(grid))
        b.norm(f"{pe}.proj2_bn", s1)
        b.lif(f"{pe}.proj2_lif", s1 * _area(grid))
    else:
        grid = g0
        b.conv(f"{pe}.proj1_conv", p0, s1, k=9, positions=_area(grid))
        b.norm(f"{pe}.proj1_bn", s1)
        b.lif(f"{pe}.proj1_lif", s1 * _area(grid))
    b.conv(f"{pe}.proj_res_conv", p0, s1, positions=_area(grid))  # 1×1, stride 2 (ImageNet) or 1 (CIFAR)
    b.norm(f"{pe}.proj_res_bn", s1)
    b.lif(f"{pe}.proj_res_lif", s1 * _area(grid))
    return grid


def _qk_patch_stage(b: Builder, s: int, e: int, prev: Poly, width: Poly, g_in: HW) -> HW:
    """``patch_embed{s}`` (s = 2, 3): e/2 → e, grid halved; returns the new grid."""
    pe, imagenet = f"patch_embed{s}", b.layout == "imagenet"
    inner = b.channel(f"{pe}.inner", e)
    grid = pool_out(g_in)
    g3 = grid if imagenet else g_in  # ImageNet pools after conv3, CIFAR after conv4
    b.conv(f"{pe}.proj3_conv", prev, inner, k=9, positions=_area(g_in))
    b.norm(f"{pe}.proj3_bn", inner)
    b.lif(f"{pe}.proj3_lif", inner * _area(g3))
    b.conv(f"{pe}.proj4_conv", inner, width, k=9, positions=_area(g3))
    b.norm(f"{pe}.proj4_bn", width)
    b.lif(f"{pe}.proj4_lif", width * _area(grid))
    b.conv(f"{pe}.proj_res_conv", prev, width, positions=_area(grid))  # 1×1 stride 2
    b.norm(f"{pe}.proj_res_bn", width)
    b.lif(f"{pe}.proj_res_lif", width * _area(grid))
    return grid


def _token_attention(b: Builder, a: str, w: Poly, N: int, h0: int, d0: int, *, alive: Poly) -> None:
    heads = b.channel(f"{a}.heads", h0)
    wq = b.derived(heads * b.channel(f"{a}.q", d0, partitions=h0))
    wk = b.derived(heads * b.channel(f"{a}.k", d0, partitions=h0))
    for name, width in (("q", wq), ("k", wk)):
        b.conv(f"{a}.{name}_conv", w, width, positions=N, alive=alive)
        b.norm(f"{a}.{name}_bn", width, alive=alive)
        b.lif(f"{a}.{name}_lif", width * N, alive=alive)
    b.lif(f"{a}.attn_lif", heads * N, alive=alive)  # one mask value per head and token
    b.conv(f"{a}.proj_conv", wk, w, positions=N, bias=True, alive=alive)
    b.norm(f"{a}.proj_bn", w, alive=alive)
    b.lif(f"{a}.proj_lif", w * N, alive=alive)


def qkformer(b: Builder, kw: Mapping[str, Any]) -> None:
    """QKFormer, both layouts (``svit-architectures.md`` §4); CIFAR forces 8 heads in every stage."""
    D0, L, K = int(kw["embed_dim"]), int(kw["depth"]), int(kw["num_classes"])
    imagenet = b.layout == "imagenet"
    h0 = int(kw["num_heads"]) if imagenet else 8
    e = (D0 // 4, D0 // 2, D0)
    depths = (1, 2, L - 3) if imagenet else (1, 1, L - 2)
    mlp_names = ("fc1", "fc2") if imagenet else ("mlp1", "mlp2")
    attn_name = "attn" if imagenet else "ssa"
    widths = [b.channel(f"stage{s}", e[s - 1]) for s in (1, 2, 3)]
    # Depth variables first in group order: branches (all blocks of all stages), then blocks per stage.
    scopes = [f"stage{s}.{j}" for s, n in zip((1, 2, 3), depths) for j in range(n)]
    branches = b.depth("branches", 2 * len(scopes), [s for s in scopes for _ in (0, 1)])
    blocks = [b.depth(f"stage{s}.blocks", n, scopes=[f"stage{s}.{j}" for j in range(n)]) if n else []
              for s, n in zip((1, 2, 3), depths)]
    grid = _qk_patch_embed1(b, kw, e[0], widths[0])
    unit = 0
    for s in (1, 2, 3):
        if s > 1:
            grid = _qk_patch_stage(b, s, e[s - 1], widths[s - 2], widths[s - 1], grid)
        N, w = _area(grid), widths[s - 1]
        mlp_ratio = float(kw["mlp_ratio"])
        for j in range(depths[s - 1]):
            p, alive = f"stage{s}.{j}", blocks[s - 1][j]
            Ni: Poly | int = N
            if s < 3:
                _token_attention(b, f"{p}.tssa", w, N, h0, e[s - 1] // h0, alive=b.derived(alive * branches[unit]))
            else:
                Ni = _select(b, p, N, alive, w)
                _ssa(b, f"{p}.{attn_name}", w, Ni, h0, e[2] // h0, alive=b.derived(alive * branches[unit]),
                     order="q(kv)")
            _mlp(b, f"{p}.mlp", w, Ni, int(e[s - 1] * mlp_ratio), alive=b.derived(alive * branches[unit + 1]),
                 names=mlp_names)
            unit += 2
    _head(b, widths[2], K, per_image=True)


#: key of the compile kwargs naming a plan's token score rule (``learned`` adds the selectors' scorers)
TOKEN_SCORE_KEY = "token_score"

#: families whose analytic formulas have a T variable (their token declarations add a T group)
_TIME_FAMILIES = ("spikformer", "sdt", "qkformer")

FAMILY_BUILDERS: dict[str, Callable[[Builder, Mapping[str, Any]], None]] = {
    "spikformer": spikformer, "sdt": sdt, "qkformer": qkformer,
}


def build_spec(family: str, layout: str, kwargs: Mapping[str, Any]) -> Builder:
    """Variables and symbolic layers of one configuration (constructor ``kwargs``)."""
    try:
        fn = FAMILY_BUILDERS[family]
    except KeyError:
        from hwsearch.errors import UserError

        raise UserError(f"no analytic cost formulas for family {family!r} (known: {', '.join(FAMILY_BUILDERS)}); "
                        f"its plug-in must add costmodels.FAMILY_BUILDERS[{family!r}]") from None
    from search_spaces.groups import TIME_AXIS_LAYOUTS

    b = Builder(family=family, layout=layout, T=int(kwargs["T"]),
                time_axis=family in FAMILY_BUILDERS and family in _TIME_FAMILIES and layout in TIME_AXIS_LAYOUTS,
                token_score=str(kwargs.get(TOKEN_SCORE_KEY, "activity")))
    fn(b, kwargs)
    return b
