"""Prunable groups of Spikformer (all three layouts); see ``pruning-couplings.md`` §2.

Axes: SPS internal widths (3 groups), the embedding width D (every residual-coupled member, dead
LayerNorms and DVS ``pos_embed``/``norm`` included), per block: attention heads, q/k width per head,
v width per head, MLP hidden width; and depth (whole blocks).
"""

from __future__ import annotations

from typing import TypeVar

import torch
import torch.nn as nn

from search_spaces.groups import AttrUpdate, ChannelGroup, DepthGroup, Group, Member, register_groups

__all__ = ["spikformer_groups", "out_members", "in_members", "norm_members", "module_attr", "submodule", "weight_width"]

_T = TypeVar("_T")
_M = TypeVar("_M", bound=nn.Module)


def module_attr(module: nn.Module, name: str, kind: type[_T]) -> _T:
    """``getattr(module, name)``, checked to be a ``kind`` (``nn.Module`` types its attributes as
    ``Tensor | Module``; the group declarations read ints, strings and tensors)."""
    value = getattr(module, name)
    if not isinstance(value, kind):
        raise TypeError(f"{type(module).__name__}.{name} is a {type(value).__name__}, expected {kind.__name__}")
    return value


def submodule(model: nn.Module, path: str, kind: type[_M]) -> _M:
    """``model.get_submodule(path)``, checked to be a ``kind`` (e.g. the ``nn.ModuleList`` of blocks)."""
    mod = model.get_submodule(path)
    if not isinstance(mod, kind):
        raise TypeError(f"{path or 'the model'} is a {type(mod).__name__}, expected {kind.__name__}")
    return mod


def weight_width(model: nn.Module, path: str, dim: int = 0) -> int:
    """Size of dimension ``dim`` of the ``weight`` of the submodule ``path``."""
    return int(module_attr(model.get_submodule(path), "weight", torch.Tensor).shape[dim])


def _params(model: nn.Module, path: str) -> list[str]:
    mod = model.get_submodule(path)
    return [n for n, t in [*mod.named_parameters(recurse=False), *mod.named_buffers(recurse=False)]
            if t is not None and t.dim() > 0]


def out_members(model: nn.Module, path: str, unit: int = 1) -> list[Member]:
    """Output side of a conv/linear (weight dim 0 + bias) or every [C] tensor of a BN/LN."""
    return [Member(module=path, param=p, dim=0, unit_size=unit) for p in _params(model, path)]


def in_members(path: str, unit: int = 1) -> list[Member]:
    """Input side of a conv/linear: weight dim 1."""
    return [Member(module=path, param="weight", dim=1, unit_size=unit)]


norm_members = out_members


def _names(layout: str) -> dict[str, str]:
    if layout == "cifar":
        return {"q": "q_linear", "k": "k_linear", "v": "v_linear", "proj": "proj_linear",
                "fc1": "fc1_linear", "fc2": "fc2_linear"}
    return {"q": "q_conv", "k": "k_conv", "v": "v_conv", "proj": "proj_conv", "fc1": "fc1_conv", "fc2": "fc2_conv"}


def spikformer_groups(model: nn.Module) -> list[Group]:
    """The groups of an unpruned Spikformer (any layout)."""
    from search_spaces import config_name, get_config

    layout = get_config(config_name(model)).layout
    n = _names(layout)
    pe = "patch_embed"
    groups: list[Group] = []
    sps = [("proj_conv", "proj_bn", "proj_conv1"), ("proj_conv1", "proj_bn1", "proj_conv2"),
           ("proj_conv2", "proj_bn2", "proj_conv3")]
    for i, (conv, bn, nxt) in enumerate(sps, start=1):
        groups.append(ChannelGroup(
            name=f"{pe}.c{i}", kind="sps", width=weight_width(model, f"{pe}.{conv}"),
            members=(*out_members(model, f"{pe}.{conv}"), *out_members(model, f"{pe}.{bn}"), *in_members(f"{pe}.{nxt}")),
        ))
    D = weight_width(model, f"{pe}.proj_conv3")
    embed: list[Member] = [*out_members(model, f"{pe}.proj_conv3"), *out_members(model, f"{pe}.proj_bn3"),
                           *out_members(model, f"{pe}.rpe_conv"), *in_members(f"{pe}.rpe_conv"),
                           *out_members(model, f"{pe}.rpe_bn")]
    blocks = submodule(model, "block", nn.ModuleList)
    for i in range(len(blocks)):
        b = f"block.{i}"
        a, m = f"{b}.attn", f"{b}.mlp"
        embed += [*norm_members(model, f"{b}.norm1"), *norm_members(model, f"{b}.norm2"),
                  *in_members(f"{a}.{n['q']}"), *in_members(f"{a}.{n['k']}"), *in_members(f"{a}.{n['v']}"),
                  *out_members(model, f"{a}.{n['proj']}"), *out_members(model, f"{a}.proj_bn"),
                  *in_members(f"{m}.{n['fc1']}"), *out_members(model, f"{m}.{n['fc2']}"), *out_members(model, f"{m}.fc2_bn")]
        h = module_attr(model.get_submodule(a), "num_heads", int)
        wqk, wv = weight_width(model, f"{a}.{n['q']}"), weight_width(model, f"{a}.{n['v']}")
        dqk, dv = wqk // h, wv // h
        qk = [*out_members(model, f"{a}.{n['q']}"), *out_members(model, f"{a}.q_bn"),
              *out_members(model, f"{a}.{n['k']}"), *out_members(model, f"{a}.k_bn")]
        v = [*out_members(model, f"{a}.{n['v']}"), *out_members(model, f"{a}.v_bn"), *in_members(f"{a}.{n['proj']}")]
        groups.append(ChannelGroup(
            name=f"{a}.heads", kind="heads", unit="head", width=h,
            members=tuple(Member(module=mm.module, param=mm.param, dim=mm.dim, unit_size=dqk) for mm in qk)
            + tuple(Member(module=mm.module, param=mm.param, dim=mm.dim, unit_size=dv) for mm in v),
            attrs=(AttrUpdate(module=a, attr="num_heads"),),
        ))
        groups.append(ChannelGroup(name=f"{a}.qk", kind="qk", width=wqk, partitions=h, members=tuple(qk)))
        groups.append(ChannelGroup(name=f"{a}.v", kind="v", width=wv, partitions=h, members=tuple(v)))
        groups.append(ChannelGroup(
            name=f"{m}.hidden", kind="mlp", width=weight_width(model, f"{m}.{n['fc1']}"),
            members=(*out_members(model, f"{m}.{n['fc1']}"), *out_members(model, f"{m}.fc1_bn"), *in_members(f"{m}.{n['fc2']}")),
            attrs=(AttrUpdate(module=m, attr="c_hidden"),),
        ))
    embed += in_members("head") if isinstance(model.get_submodule("head"), nn.Linear) else []
    if layout == "dvs":
        embed += [Member(module="", param="pos_embed", dim=2), *norm_members(model, "norm")]
    groups.insert(3, ChannelGroup(name="embed", kind="embed", width=D, members=tuple(embed),
                                  attrs=(AttrUpdate(module="", attr="embed_dim"),)))
    branches = tuple(f"block.{i}.{br}" for i in range(len(blocks)) for br in ("attn", "mlp"))
    # Branches are removed before whole blocks (paths refer to the unpruned numbering).
    groups.append(DepthGroup(name="branches", kind="branches", container="", width=len(branches), min_width=0,
                             units=branches))
    groups.append(DepthGroup(name="block", kind="blocks", container="block", width=len(blocks),
                             attrs=(AttrUpdate(module="", attr="depth"),)))
    return groups


register_groups("spikformer", spikformer_groups)
