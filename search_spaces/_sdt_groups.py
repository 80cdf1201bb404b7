"""Prunable groups of the Spike-driven Transformer (family ``sdt``); see ``pruning-couplings.md`` §3.

Axes: SPS internal widths (``patch_embed.c1..c3``), the embedding width D (``embed``: every
residual-coupled member; the SPS membrane shortcut ``rpe_bn(rpe_conv(lif(x_feat))) + x_feat`` adds the
pre-LIF ``proj_bn3`` output, which couples by index exactly like a spike residual), and per block:

* ``block.{i}.attn.heads`` (unit head): heads are only a reshape in SDT attention (``k∘v``, ``Σ_N``,
  ``talking_heads_lif`` and ``q∘kv`` are all per channel), so a head is just ``d`` consecutive q/k/v
  channels; the group also slices the dead ``talking_heads`` ``[h, h, 1]`` weight on both dims and sets
  ``num_heads``.
* ``block.{i}.attn.qkv`` (kind ``qkv``): q/k/v channel c together with ``proj_conv`` input c. Partitioned
  by head (``partitions = num_heads``) so the kept width stays divisible by the kept heads and the
  forward's ``[T,B,h,N,d]`` reshape stays valid (any split is numerically the same in SDT).
* ``block.{i}.mlp.hidden``: ``fc1`` out, ``fc1_bn``, ``fc2`` in; sets ``c_hidden``. ``res`` is never
  touched (a fresh construction at hidden width D would switch the inner shortcut on).

Depth: ``branches`` (a block's ``attn`` or ``mlp``, min 0: each carries its own shortcut) and ``block``
(whole blocks).
"""

from __future__ import annotations

import torch.nn as nn

from search_spaces._spikformer_groups import in_members, module_attr, out_members, submodule, weight_width
from search_spaces.groups import AttrUpdate, ChannelGroup, DepthGroup, Group, Member, register_groups

__all__ = ["sdt_groups"]


def _as_heads(members: list[Member], unit: int) -> tuple[Member, ...]:
    return tuple(Member(module=m.module, param=m.param, dim=m.dim, unit_size=unit) for m in members)


def _sps_groups(model: nn.Module, pe: str) -> list[Group]:
    stages = [("proj_conv", "proj_bn", "proj_conv1"), ("proj_conv1", "proj_bn1", "proj_conv2"),
              ("proj_conv2", "proj_bn2", "proj_conv3")]
    return [
        ChannelGroup(name=f"{pe}.c{i}", kind="sps", width=weight_width(model, f"{pe}.{conv}"),
                     members=(*out_members(model, f"{pe}.{conv}"), *out_members(model, f"{pe}.{bn}"),
                              *in_members(f"{pe}.{nxt}")))
        for i, (conv, bn, nxt) in enumerate(stages, start=1)
    ]


def _block_groups(model: nn.Module, b: str) -> tuple[list[Member], list[Group]]:
    """(embed members, channel groups) of block ``b``."""
    a, m = f"{b}.attn", f"{b}.mlp"
    embed = [*in_members(f"{a}.q_conv"), *in_members(f"{a}.k_conv"), *in_members(f"{a}.v_conv"),
             *out_members(model, f"{a}.proj_conv"), *out_members(model, f"{a}.proj_bn"),
             *in_members(f"{m}.fc1_conv"), *out_members(model, f"{m}.fc2_conv"), *out_members(model, f"{m}.fc2_bn")]
    h = module_attr(model.get_submodule(a), "num_heads", int)
    width = weight_width(model, f"{a}.q_conv")
    qkv = [*out_members(model, f"{a}.q_conv"), *out_members(model, f"{a}.q_bn"),
           *out_members(model, f"{a}.k_conv"), *out_members(model, f"{a}.k_bn"),
           *out_members(model, f"{a}.v_conv"), *out_members(model, f"{a}.v_bn"), *in_members(f"{a}.proj_conv")]
    talking = [Member(module=f"{a}.talking_heads", dim=0), Member(module=f"{a}.talking_heads", dim=1)]
    groups: list[Group] = [
        ChannelGroup(name=f"{a}.heads", kind="heads", unit="head", width=h,
                     members=_as_heads(qkv, width // h) + tuple(talking),
                     attrs=(AttrUpdate(module=a, attr="num_heads"),)),
        ChannelGroup(name=f"{a}.qkv", kind="qkv", width=width, partitions=h, members=tuple(qkv)),
        ChannelGroup(name=f"{m}.hidden", kind="mlp", width=weight_width(model, f"{m}.fc1_conv"),
                     members=(*out_members(model, f"{m}.fc1_conv"), *out_members(model, f"{m}.fc1_bn"),
                              *in_members(f"{m}.fc2_conv")),
                     attrs=(AttrUpdate(module=m, attr="c_hidden"),)),
    ]
    return embed, groups


def sdt_groups(model: nn.Module) -> list[Group]:
    """The groups of an unpruned Spike-driven Transformer (ImageNet or CIFAR layout)."""
    pe = "patch_embed"
    groups = _sps_groups(model, pe)
    embed: list[Member] = [*out_members(model, f"{pe}.proj_conv3"), *out_members(model, f"{pe}.proj_bn3"),
                           *out_members(model, f"{pe}.rpe_conv"), *in_members(f"{pe}.rpe_conv"),
                           *out_members(model, f"{pe}.rpe_bn")]
    blocks = submodule(model, "block", nn.ModuleList)
    for i in range(len(blocks)):
        members, block_groups = _block_groups(model, f"block.{i}")
        embed += members
        groups += block_groups
    embed += in_members("head") if isinstance(model.get_submodule("head"), nn.Linear) else []
    groups.insert(3, ChannelGroup(name="embed", kind="embed", width=weight_width(model, f"{pe}.proj_conv3"),
                                  members=tuple(embed), attrs=(AttrUpdate(module="", attr="embed_dim"),)))
    branches = tuple(f"block.{i}.{br}" for i in range(len(blocks)) for br in ("attn", "mlp"))
    # Branches are removed before whole blocks (paths refer to the unpruned numbering).
    groups.append(DepthGroup(name="branches", kind="branches", container="", width=len(branches), min_width=0,
                             units=branches))
    groups.append(DepthGroup(name="block", kind="blocks", container="block", width=len(blocks),
                             attrs=(AttrUpdate(module="", attr="depth"),)))
    return groups


register_groups("sdt", sdt_groups)
