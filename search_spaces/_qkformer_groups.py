"""Prunable groups of QKFormer (family ``qkformer``, both layouts); see ``pruning-couplings.md`` §4.

Axes:

* ``stage1``/``stage2``/``stage3`` (kind ``stage``): the residual width of each stage (D/4, D/2, D):
  the patch embedding's two summed LIF paths (output conv + BN and ``proj_res_conv`` + BN), every block
  of the stage (attention inputs, ``proj_conv`` out + bias + BN, MLP ``fc1`` in, ``fc2`` out + bias + BN),
  and the consumers: the next patch embedding's ``proj3_conv`` and ``proj_res_conv`` inputs (stage 3:
  ``head``). ``stage3`` also sets the model's ``embed_dim``.
* ``patch_embed1.inner`` (``proj_conv`` out ↔ ``proj1_conv`` and ``proj_res_conv`` in: one LIF output
  feeds both), ImageNet ``patch_embed1.inner1`` (``proj1_conv`` out ↔ ``proj2_conv`` in), and
  ``patch_embed{2,3}.inner`` (``proj3_conv`` out ↔ ``proj4_conv`` in); kind ``patch``.
* token blocks ``stage{1,2}.{j}.tssa``: ``heads`` (unit head: q and k channels of the head, ``proj_conv``
  in; sets ``num_heads``), ``q`` (q channels only: q is summed over each head's channels into the token
  mask, no index coupling with k) and ``k`` (k channel ↔ ``proj_conv`` input), both partitioned by head
  so every head keeps the same count and ``q_head_widths``/``k_head_widths`` stay ``None`` (even split).
* stage-3 blocks ``stage3.{i}.attn`` (CIFAR ``ssa``): ``heads``, ``qk``, ``v`` as Spikformer ImageNet.
* every block's ``mlp.hidden`` (sets ``c_hidden``).
* depth: ``branches`` (any block's attention or MLP, min 0) and ``stage{1,2,3}.blocks`` (blocks of a
  stage, min 0: every block is residual and the forward loops over whatever is left). The model's
  ``depth`` attribute is the constructor argument (total blocks) and is not used by the forward; it is
  left unchanged.
"""

from __future__ import annotations

import torch.nn as nn

from search_spaces._spikformer_groups import in_members, module_attr, out_members, submodule, weight_width
from search_spaces.groups import AttrUpdate, ChannelGroup, DepthGroup, Group, Member, register_groups

__all__ = ["qkformer_groups"]


def _as_heads(members: list[Member], unit: int) -> tuple[Member, ...]:
    return tuple(Member(module=m.module, param=m.param, dim=m.dim, unit_size=unit) for m in members)


def _conv_bn(model: nn.Module, conv: str, bn: str) -> list[Member]:
    return [*out_members(model, conv), *out_members(model, bn)]


def _patch_groups(model: nn.Module, s: int, imagenet: bool) -> tuple[list[Member], list[Group]]:
    """(stage-s members of the patch embedding, its inner groups)."""
    pe = f"patch_embed{s}"
    if s == 1:
        inner = [ChannelGroup(name=f"{pe}.inner", kind="patch", width=weight_width(model, f"{pe}.proj_conv"),
                              members=(*_conv_bn(model, f"{pe}.proj_conv", f"{pe}.proj_bn"),
                                       *in_members(f"{pe}.proj1_conv"), *in_members(f"{pe}.proj_res_conv")))]
        last = "proj1"
        if imagenet:
            inner.append(ChannelGroup(name=f"{pe}.inner1", kind="patch", width=weight_width(model, f"{pe}.proj1_conv"),
                                      members=(*_conv_bn(model, f"{pe}.proj1_conv", f"{pe}.proj1_bn"),
                                               *in_members(f"{pe}.proj2_conv"))))
            last = "proj2"
    else:
        inner = [ChannelGroup(name=f"{pe}.inner", kind="patch", width=weight_width(model, f"{pe}.proj3_conv"),
                              members=(*_conv_bn(model, f"{pe}.proj3_conv", f"{pe}.proj3_bn"),
                                       *in_members(f"{pe}.proj4_conv")))]
        last = "proj4"
    stage = [*_conv_bn(model, f"{pe}.{last}_conv", f"{pe}.{last}_bn"),
             *_conv_bn(model, f"{pe}.proj_res_conv", f"{pe}.proj_res_bn")]
    return stage, list(inner)


def _mlp(model: nn.Module, m: str) -> tuple[list[Member], Group]:
    first, second = module_attr(model.get_submodule(m), "names", tuple)
    fc1, fc2 = f"{m}.{first}_conv", f"{m}.{second}_conv"
    stage = [*in_members(fc1), *_conv_bn(model, fc2, f"{m}.{second}_bn")]
    hidden = ChannelGroup(name=f"{m}.hidden", kind="mlp", width=weight_width(model, fc1),
                          members=(*_conv_bn(model, fc1, f"{m}.{first}_bn"), *in_members(fc2)),
                          attrs=(AttrUpdate(module=m, attr="c_hidden"),))
    return stage, hidden


def _token_block(model: nn.Module, b: str) -> tuple[list[Member], list[Group]]:
    a = f"{b}.tssa"
    stage = [*in_members(f"{a}.q_conv"), *in_members(f"{a}.k_conv"),
             *_conv_bn(model, f"{a}.proj_conv", f"{a}.proj_bn")]
    h = module_attr(model.get_submodule(a), "num_heads", int)
    wq, wk = weight_width(model, f"{a}.q_conv"), weight_width(model, f"{a}.k_conv")
    q = _conv_bn(model, f"{a}.q_conv", f"{a}.q_bn")
    k = [*_conv_bn(model, f"{a}.k_conv", f"{a}.k_bn"), *in_members(f"{a}.proj_conv")]
    mlp_stage, hidden = _mlp(model, f"{b}.mlp")
    groups: list[Group] = [
        ChannelGroup(name=f"{a}.heads", kind="heads", unit="head", width=h,
                     members=_as_heads(q, wq // h) + _as_heads(k, wk // h),
                     attrs=(AttrUpdate(module=a, attr="num_heads"),)),
        ChannelGroup(name=f"{a}.q", kind="q", width=wq, partitions=h, members=tuple(q)),
        ChannelGroup(name=f"{a}.k", kind="k", width=wk, partitions=h, members=tuple(k)),
        hidden,
    ]
    return stage + mlp_stage, groups


def _ssa_block(model: nn.Module, b: str) -> tuple[list[Member], list[Group]]:
    a = f"{b}.{model.get_submodule(b).attn_name}"
    stage = [*in_members(f"{a}.q_conv"), *in_members(f"{a}.k_conv"), *in_members(f"{a}.v_conv"),
             *_conv_bn(model, f"{a}.proj_conv", f"{a}.proj_bn")]
    h = module_attr(model.get_submodule(a), "num_heads", int)
    wqk, wv = weight_width(model, f"{a}.q_conv"), weight_width(model, f"{a}.v_conv")
    qk = [*_conv_bn(model, f"{a}.q_conv", f"{a}.q_bn"), *_conv_bn(model, f"{a}.k_conv", f"{a}.k_bn")]
    v = [*_conv_bn(model, f"{a}.v_conv", f"{a}.v_bn"), *in_members(f"{a}.proj_conv")]
    mlp_stage, hidden = _mlp(model, f"{b}.mlp")
    groups: list[Group] = [
        ChannelGroup(name=f"{a}.heads", kind="heads", unit="head", width=h,
                     members=_as_heads(qk, wqk // h) + _as_heads(v, wv // h),
                     attrs=(AttrUpdate(module=a, attr="num_heads"),)),
        ChannelGroup(name=f"{a}.qk", kind="qk", width=wqk, partitions=h, members=tuple(qk)),
        ChannelGroup(name=f"{a}.v", kind="v", width=wv, partitions=h, members=tuple(v)),
        hidden,
    ]
    return stage + mlp_stage, groups


def _branches(model: nn.Module) -> tuple[str, ...]:
    units: list[str] = []
    for s in (1, 2, 3):
        for j, blk in enumerate(submodule(model, f"stage{s}", nn.ModuleList)):
            attn = "tssa" if s < 3 else blk.attn_name
            units += [f"stage{s}.{j}.{attn}", f"stage{s}.{j}.mlp"]
    return tuple(units)


def qkformer_groups(model: nn.Module) -> list[Group]:
    """The groups of an unpruned QKFormer (ImageNet or CIFAR layout)."""
    imagenet = model.layout == "imagenet"
    groups: list[Group] = []
    for s in (1, 2, 3):
        stage, inner = _patch_groups(model, s, imagenet)
        block_groups: list[Group] = []
        for j in range(len(submodule(model, f"stage{s}", nn.ModuleList))):
            members, bg = (_token_block if s < 3 else _ssa_block)(model, f"stage{s}.{j}")
            stage += members
            block_groups += bg
        if s < 3:
            stage += [*in_members(f"patch_embed{s + 1}.proj3_conv"), *in_members(f"patch_embed{s + 1}.proj_res_conv")]
        elif isinstance(model.get_submodule("head"), nn.Linear):
            stage += in_members("head")
        width = weight_width(model, f"patch_embed{s}.proj_res_conv")
        attrs = (AttrUpdate(module="", attr="embed_dim"),) if s == 3 else ()
        groups += [*inner, ChannelGroup(name=f"stage{s}", kind="stage", width=width, members=tuple(stage),
                                        attrs=attrs), *block_groups]
    branches = _branches(model)
    # Branches are removed before whole blocks (paths refer to the unpruned numbering).
    groups.append(DepthGroup(name="branches", kind="branches", container="", width=len(branches), min_width=0,
                             units=branches))
    for s in (1, 2, 3):
        if n := len(submodule(model, f"stage{s}", nn.ModuleList)):
            groups.append(DepthGroup(name=f"stage{s}.blocks", kind="blocks", container=f"stage{s}", width=n,
                                     min_width=0))
    return groups


register_groups("qkformer", qkformer_groups)
