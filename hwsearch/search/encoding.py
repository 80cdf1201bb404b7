"""The search's encoding of pruning plans (its search space): which groups a search may shrink, and to which discrete levels.

A :class:`Variable` is one channel group with its allowed kept counts (``levels``, from unpruned
downwards, one per pruning rate of the grid that the group's granularity can realise), or one work
axis (axes ``tokens``: the token keep ratio before a block, levels in kept tokens of N; ``time``: the
number of steps, a level per allowed T). A candidate
is a mapping variable name -> level index; :meth:`PlanEncoding.plan` turns it into a
:class:`~hwsearch.pruning.PruningPlan` of counts, ranked later by the plan's criterion.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hwsearch.errors import UserError

if TYPE_CHECKING:  # torch loads only when a space is built, so the CLI parses arguments without it
    import torch.nn as nn

    from hwsearch.pruning import PruningPlan

__all__ = ["ALL_AXES", "DEFAULT_AXES", "DEFAULT_RATES", "WORK_AXES", "PlanEncoding", "Variable"]

DEFAULT_RATES: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
#: Group kinds searched by default: the free (non-residual) groups, as PrimeSVT and PSViT prune.
DEFAULT_AXES: tuple[str, ...] = ("mlp", "qk", "v", "qkv", "q", "k", "sps", "patch")
#: Work axes that remove no weights: the token keep ratio before each block and the number of steps T.
WORK_AXES: tuple[str, ...] = ("tokens", "time")
ALL_AXES: tuple[str, ...] = (*DEFAULT_AXES, "heads", "embed", "stage", *WORK_AXES)


@dataclass(frozen=True, slots=True, kw_only=True)
class Variable:
    """One searchable group.

    Attributes:
        name: the group name (``block.3.mlp.hidden``).
        kind: the group kind (``mlp``, ``qk``, ...).
        width: units in the unpruned model.
        levels: kept counts, ``levels[0] == width`` (unpruned), strictly decreasing.
        rates: the pruning rate each level realises, ``1 - kept / width``.
        params: parameters the group's members hold (PrimeSVT's "layer size").
        order: position of the group in the network (ties in size are broken by it).
    """

    name: str
    kind: str
    width: int
    levels: tuple[int, ...]
    rates: tuple[float, ...]
    params: int
    order: int

    def level_for_rate(self, rate: float) -> int:
        """The index of the level whose realised rate is closest to ``rate`` (ties: milder)."""
        return min(range(len(self.rates)), key=lambda i: (abs(self.rates[i] - rate), i))


class PlanEncoding:
    """The variables of one model: what strategies choose, and how a choice becomes a plan.

    Args:
        model: registry name of the source configuration.
        variables: the searchable groups.
        checkpoint_sha256: identity of the source weights (copied into every plan).
        criterion: ranking used when a plan is applied (``l2`` by default, as the papers).
        model_kwargs: constructor overrides of the source model.
        grid: the nominal pruning-rate grid the levels were made from.
    """

    def __init__(self, *, model: str, variables: Sequence[Variable], checkpoint_sha256: str = "",
                 criterion: str = "l2", model_kwargs: Mapping[str, object] | None = None,
                 grid: Sequence[float] = DEFAULT_RATES) -> None:
        self.model = model
        self.variables = list(variables)
        self.checkpoint_sha256 = checkpoint_sha256
        self.criterion = criterion
        self.model_kwargs = dict(model_kwargs or {})
        self.grid = tuple(sorted({0.0, *(float(r) for r in grid)}))
        self._by_name = {v.name: v for v in self.variables}

    @classmethod
    def from_model(cls, model: nn.Module, *, axes: Sequence[str] = DEFAULT_AXES,
                   rates: Sequence[float] = DEFAULT_RATES, checkpoint_sha256: str = "",
                   criterion: str = "l2") -> PlanEncoding:
        """Variables for every channel group of ``model`` whose kind is in ``axes``."""
        if not rates or any(not 0.0 <= r < 1.0 for r in rates):
            raise UserError(f"pruning rates must lie in [0, 1), got {list(rates)}; e.g. --rates 0.1,0.2,0.3")
        grid = sorted({0.0, *(float(r) for r in rates)})
        params = {id(p) for p in model.parameters()}
        variables = []
        from hwsearch.pruning import ChannelGroup, TimeGroup, TokenGroup, groups_of
        from search_spaces import config_name

        for order, g in enumerate(groups_of(model)):
            if not isinstance(g, (ChannelGroup, TokenGroup, TimeGroup)) or g.kind not in axes:
                continue
            allowed = g.allowed_counts()
            levels: list[int] = []
            for r in grid:
                target = g.width * (1.0 - r)
                count = min(allowed, key=lambda c: (abs(c - target), -c))
                if not levels or count < levels[-1]:
                    levels.append(count)
            if len(levels) < 2:
                continue
            touched: dict[int, int] = {}
            for m in getattr(g, "members", ()):  # token and time groups hold no parameters
                t = getattr(model.get_submodule(m.module) if m.module else model, m.param)
                if id(t) in params:
                    touched[id(t)] = t.numel()
            variables.append(Variable(name=g.name, kind=g.kind, width=g.width, levels=tuple(levels),
                                      rates=tuple(1.0 - c / g.width for c in levels),
                                      params=sum(touched.values()), order=order))
        if not variables:
            raise UserError(f"no prunable groups of kinds {list(axes)} in {config_name(model)}; "
                            "see `hwsearch groups` for the kinds it has")
        return cls(model=config_name(model), variables=variables, checkpoint_sha256=checkpoint_sha256,
                   criterion=criterion, model_kwargs=getattr(model, "hwsearch_kwargs", {}), grid=grid)

    def __len__(self) -> int:
        return len(self.variables)

    def __getitem__(self, name: str) -> Variable:
        return self._by_name[name]

    def names(self) -> list[str]:
        return [v.name for v in self.variables]

    def widths(self, levels: Mapping[str, int]) -> dict[str, int]:
        """Group -> kept count for a candidate (variables not named stay unpruned)."""
        return {name: self._by_name[name].levels[lv] for name, lv in levels.items() if lv}

    def plan(self, levels: Mapping[str, int]) -> PruningPlan:
        """The pruning plan of a candidate (counts; ranked by :attr:`criterion` when applied)."""
        from hwsearch.pruning import PruningPlan

        for name, lv in levels.items():
            var = self._by_name.get(name)
            if var is None:
                raise UserError(f"unknown search variable '{name}'")
            if not 0 <= lv < len(var.levels):
                raise UserError(f"level {lv} of {name} is outside 0..{len(var.levels) - 1}")
        return PruningPlan(model=self.model, keep=self.widths(levels), checkpoint_sha256=self.checkpoint_sha256,
                           criterion=self.criterion, model_kwargs=self.model_kwargs)

    def max_levels(self) -> dict[str, int]:
        """Every variable at its strongest level (the smallest reachable model)."""
        return {v.name: len(v.levels) - 1 for v in self.variables}

    def uniform_levels(self, rate: float) -> dict[str, int]:
        """Every variable at the level closest to ``rate`` (PSViT's uniform pruning)."""
        return {v.name: v.level_for_rate(rate) for v in self.variables}
