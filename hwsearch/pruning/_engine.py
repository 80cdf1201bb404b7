"""Physical structured pruning: slice every member of every group, update static attributes.

``prune(model, plan)`` returns a new, plain, dense ``nn.Module`` (no masks): weights, biases, BN
affine and running statistics and LayerNorms are sliced with ``index_select``; Conv/Linear/BN/LN size
attributes and the groups' declared attributes (``num_heads``, ``c_hidden``, ``depth``) are updated;
removed blocks leave their ``ModuleList``. The input model is not modified. Kept units come from the
plan's indices, or from the plan's criterion when the plan gives only counts.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable, Mapping, Sequence

import torch
import torch.nn as nn
from spikingjelly.activation_based import functional

from hwsearch.pruning._importance import Importance, create_criterion
from hwsearch.pruning._plan import PlanError, PruningPlan
from hwsearch.pruning._tokens import apply_tokens
from search_spaces.groups import AttrUpdate, ChannelGroup, DepthGroup, Group, TimeGroup, TokenGroup, groups_of

log = logging.getLogger(__name__)

__all__ = ["validate_plan", "resolve_plan", "prune", "topk_units", "full_plan"]

def _by_name(groups: Sequence[Group]) -> dict[str, Group]:
    return {g.name: g for g in groups}


def validate_plan(plan: PruningPlan, groups: Sequence[Group]) -> None:
    """Raise :class:`PlanError` (one line naming the group and the limit) if ``plan`` is not applicable."""
    table = _by_name(groups)
    _check_token_score(plan.token_score)
    for name, value in plan.keep.items():
        g = table.get(name)
        if g is None:
            import difflib

            close = difflib.get_close_matches(name, list(table), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise PlanError(f"plan names unknown group '{name}'{hint} (list them with: hwsearch groups)")
        count = value if isinstance(value, int) else len(value)
        if isinstance(g, (TokenGroup, TimeGroup)):
            unit = "tokens" if isinstance(g, TokenGroup) else "time steps"
            if not g.min_width <= count <= g.width:
                raise PlanError(f"plan keeps {count} of {g.width} {unit} in {name} (allowed {g.min_width}..{g.width})")
            if isinstance(value, tuple) and (len(set(value)) != len(value) or any(not 0 <= i < g.width for i in value)):
                raise PlanError(f"plan for {name} has duplicate or out-of-range indices (0..{g.width - 1})")
            continue
        unit = "heads" if isinstance(g, ChannelGroup) and g.unit == "head" else (
            "blocks" if isinstance(g, DepthGroup) else "channels")
        if isinstance(g, DepthGroup):
            if not g.min_width <= count <= g.width:
                raise PlanError(f"plan keeps {count} of {g.width} {unit} in {name} (allowed {g.min_width}..{g.width})")
            if isinstance(value, tuple) and (len(set(value)) != len(value) or any(not 0 <= i < g.width for i in value)):
                raise PlanError(f"plan for {name} has duplicate or out-of-range indices (0..{g.width - 1})")
            continue
        per_min = g.min_width * g.partitions
        if count < per_min or count > g.width:
            raise PlanError(
                f"plan keeps {count} of {g.width} {unit} in {name} (min_width {per_min}); raise the kept width"
                if count < per_min else f"plan keeps {count} of {g.width} {unit} in {name}, more than it has"
            )
        if count % g.partitions:
            raise PlanError(f"plan keeps {count} {unit} in {name}, not a multiple of its {g.partitions} partitions (heads)")
        per = count // g.partitions
        if per % g.round_to and per != g.partition_width:
            raise PlanError(f"plan keeps {per} {unit} per partition in {name}; must be a multiple of round_to={g.round_to}")
        if isinstance(value, tuple):
            if len(set(value)) != len(value) or any(not 0 <= i < g.width for i in value):
                raise PlanError(f"plan for {name} has duplicate or out-of-range indices (0..{g.width - 1})")
            pw = g.partition_width
            counts = [sum(1 for i in value if i // pw == p) for p in range(g.partitions)]
            if len(set(counts)) != 1:
                raise PlanError(f"plan for {name} keeps unequal numbers per head {counts}; keep the same number in each")


def _check_token_score(score: str) -> None:
    from search_spaces.tokens import LEARNED, TOKEN_SCORES

    known = [*TOKEN_SCORES.list(), LEARNED]
    if score not in known:
        import difflib

        close = difflib.get_close_matches(score, known, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise PlanError(f"unknown token score '{score}' in the plan{hint} (known: {', '.join(known)})")


def topk_units(scores: torch.Tensor, count: int, partitions: int = 1) -> tuple[int, ...]:
    """Indices of the ``count`` best units (equal share per partition), ties to the lower index."""
    width = scores.numel()
    pw, per = width // partitions, count // partitions
    kept: list[int] = []
    for p in range(partitions):
        part = scores[p * pw : (p + 1) * pw]
        order = torch.sort(part, descending=True, stable=True).indices[:per]
        kept.extend(int(i) + p * pw for i in order)
    return tuple(sorted(kept))


def _depth_scores(model: nn.Module, g: DepthGroup, criterion: Importance) -> torch.Tensor:
    units = _depth_units(model, g)
    if criterion.name == "random":
        gen = torch.Generator().manual_seed(getattr(criterion, "seed", 0) * 7919 + len(g.name))
        return torch.rand(len(units), generator=gen)
    p = 1 if criterion.name == "l1" else 2
    return torch.tensor([
        float(sum(t.detach().abs().pow(p).sum() for t in u.parameters())) ** (1 / p) if u is not None else 0.0
        for u in units
    ])


def _depth_units(model: nn.Module, g: DepthGroup) -> list[nn.Module | None]:
    if g.kind == "blocks":
        blocks = model.get_submodule(g.container)
        if not isinstance(blocks, Iterable):  # what list() of a non-iterable module raised
            raise TypeError(f"'{type(blocks).__name__}' object is not iterable")
        return list(blocks)
    return [_get_optional(model, path) for path in g.units]


def _get_optional(model: nn.Module, path: str) -> nn.Module | None:
    parent, _, child = path.rpartition(".")
    unit: nn.Module | None = getattr(model.get_submodule(parent) if parent else model, child)
    return unit


def resolve_plan(
    model: nn.Module, plan: PruningPlan, groups: Sequence[Group] | None = None, criterion: Importance | None = None
) -> PruningPlan:
    """``plan`` with every count replaced by the indices of the best units under its criterion."""
    groups = groups if groups is not None else groups_of(model)
    validate_plan(plan, groups)
    if plan.resolved:
        return plan
    crit = criterion or create_criterion(plan.criterion, **({"seed": plan.seed} if plan.criterion == "random" else {}))
    crit.prepare(model)
    table = _by_name(groups)
    keep: dict[str, tuple[int, ...]] = {}
    for name, value in plan.keep.items():
        if isinstance(value, tuple):
            keep[name] = value
            continue
        g = table[name]
        if isinstance(g, (TokenGroup, TimeGroup)):  # which tokens stay is decided per image at run time
            keep[name] = tuple(range(value))
        elif isinstance(g, DepthGroup):
            keep[name] = topk_units(_depth_scores(model, g, crit), value)
        else:
            keep[name] = topk_units(crit.scores(model, g), value, g.partitions)
    return PruningPlan(model=plan.model, keep=keep, checkpoint_sha256=plan.checkpoint_sha256,
                       criterion=plan.criterion, model_kwargs=plan.model_kwargs, seed=plan.seed,
                       token_score=plan.token_score)


def full_plan(model: nn.Module, groups: Sequence[Group] | None = None, **fields: object) -> PruningPlan:
    """A plan keeping every unit of every group (pruning with it reproduces the model exactly)."""
    groups = groups if groups is not None else groups_of(model)
    return PruningPlan(model=getattr(model, "hwsearch_config", ""), keep={g.name: g.width for g in groups},
                       **fields)  # type: ignore[arg-type]


def _masks(model_state: Mapping[str, torch.Tensor], groups: Sequence[Group],
           keep: Mapping[str, tuple[int, ...]]) -> dict[tuple[str, int], torch.Tensor]:
    masks: dict[tuple[str, int], torch.Tensor] = {}
    for g in groups:
        if not isinstance(g, ChannelGroup) or g.name not in keep or len(keep[g.name]) == g.width:
            continue
        kept = torch.zeros(g.width, dtype=torch.bool)
        kept[list(keep[g.name])] = True
        removed = (~kept).nonzero().flatten()
        for m in g.members:
            t = model_state[m.key]
            mask = masks.setdefault((m.key, m.dim), torch.ones(t.shape[m.dim], dtype=torch.bool))
            idx = m.offset + removed[:, None] * m.unit_size + torch.arange(m.unit_size)
            mask[idx.flatten()] = False
    return masks


def _fix_module_sizes(module: nn.Module) -> None:
    if isinstance(module, nn.modules.conv._ConvNd):
        module.out_channels = module.weight.shape[0]
        module.in_channels = module.weight.shape[1] * module.groups
    elif isinstance(module, nn.Linear):
        module.out_features, module.in_features = module.weight.shape
    elif isinstance(module, nn.modules.batchnorm._BatchNorm):
        ref = module.weight if module.weight is not None else module.running_mean
        module.num_features = ref.shape[0]
    elif isinstance(module, nn.LayerNorm) and module.weight is not None:
        module.normalized_shape = (module.weight.shape[0],)


def _apply_attr(model: nn.Module, upd: AttrUpdate, kept_units: int) -> None:
    target = model.get_submodule(upd.module) if upd.module else model
    setattr(target, upd.attr, kept_units * upd.per_unit)


def prune(model: nn.Module, plan: PruningPlan, groups: Sequence[Group] | None = None,
          criterion: Importance | None = None) -> nn.Module:
    """A physically pruned copy of ``model``; ``model`` itself is left untouched.

    Args:
        model: an unpruned model built by hwsearch (``create_model``/``load_model``).
        plan: what to keep; counts are resolved with the plan's criterion (or ``criterion``).
        groups: the model's groups (default: declared by its family).
        criterion: importance instance to resolve counts (needed for ``taylor``: it carries the data).

    Returns:
        A dense ``nn.Module`` in eval/train mode as ``model``, with fresh neuron state.
    """
    groups = groups if groups is not None else groups_of(model)
    plan = resolve_plan(model, plan, groups, criterion)
    keep = {name: v for name, v in plan.keep.items() if isinstance(v, tuple)}
    if len(keep) != len(plan.keep):  # resolve_plan leaves no counts
        raise PlanError("plan still has counts after resolving")
    functional.reset_net(model)
    if log.isEnabledFor(logging.DEBUG):  # the count is not worth a loop per candidate otherwise
        log.debug("pruning %s: %d group(s) shrunk", getattr(model, "hwsearch_config", type(model).__name__),
                  sum(1 for g in groups if g.name in keep and len(keep[g.name]) < g.width))
    # Share every tensor in the copy, then replace: peak memory stays near one model plus the pruned one.
    memo = {id(t): t for t in [*model.parameters(), *model.buffers()]}
    new = copy.deepcopy(model, memo)
    masks = _masks(dict(model.state_dict(keep_vars=True)), groups, keep)
    by_key: dict[str, list[tuple[int, torch.Tensor]]] = {}
    for (key, dim), mask in masks.items():
        by_key.setdefault(key, []).append((dim, mask.nonzero().flatten()))
    for mod_name, module in new.named_modules():
        for pname, tensor in list(module._parameters.items()) + list(module._buffers.items()):
            if tensor is None:
                continue
            key = f"{mod_name}.{pname}" if mod_name else pname
            data = tensor.detach()
            if key in by_key:
                for dim, idx in by_key[key]:
                    data = data.index_select(dim, idx)
            else:
                data = data.clone()
            if pname in module._parameters:
                module._parameters[pname] = nn.Parameter(data, requires_grad=tensor.requires_grad)
            else:
                module._buffers[pname] = data
        _fix_module_sizes(module)
    apply_tokens(new, groups, keep, score=plan.token_score)  # before depth pruning: selectors go with their block
    for g in groups:
        if g.name not in keep:
            continue
        kept = keep[g.name]
        if isinstance(g, ChannelGroup):
            for upd in g.attrs:
                _apply_attr(new, upd, len(kept))
        elif isinstance(g, DepthGroup) and len(kept) != g.width:
            _remove_depth(new, g, kept)
    new.hwsearch_config = getattr(model, "hwsearch_config", None)  # type: ignore[assignment]
    new.hwsearch_kwargs = dict(getattr(model, "hwsearch_kwargs", {}))  # type: ignore[assignment]
    new.hwsearch_plan = plan  # type: ignore[assignment]
    functional.invalidate_reset_cache(new)
    functional.reset_net(new)
    return new


def _remove_depth(model: nn.Module, g: DepthGroup, kept: tuple[int, ...]) -> None:
    if g.kind == "blocks":
        parent, _, child = g.container.rpartition(".")
        holder = model.get_submodule(parent) if parent else model
        old = getattr(holder, child)
        setattr(holder, child, nn.ModuleList([old[i] for i in kept]))
    else:
        for i, path in enumerate(g.units):
            if i not in kept:
                parent, _, child = path.rpartition(".")
                setattr(model.get_submodule(parent) if parent else model, child, None)
    for upd in g.attrs:
        _apply_attr(model, upd, len(kept))
