"""Symbolic layer tables: every layer's parameters, MACs and spikes as polynomials in the kept widths.

A family builder (``_families.py``) walks a configuration like its forward pass and records one
:class:`SymLayer` per conv/linear/matmul/norm/LIF through a :class:`Builder`. Widths are variables:
one per channel group (its kept units *per partition*, so a q/k group with ``partitions = heads``
contributes channels-per-head and the heads group the head count: q width = heads × per-head), and
one 0/1 indicator per unit of a depth group (a block, or a block's attention/MLP branch).

Which layers take binary spike inputs (SOPs) and which LIF produces that input is decided by
:func:`spike_input`, one rule table per family shared with the measured cost model
(``cost-conventions.md`` §4).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from costmodels._poly import Poly

__all__ = ["Variable", "SymLayer", "TokenPoint", "Builder", "spike_input"]


@dataclass(frozen=True, slots=True)
class Variable:
    """One analytic variable: a channel group's kept units per partition, or one depth-group unit.

    Attributes:
        group: group name (``block.3.attn.qk``, ``block``; '' for derived and schedule values).
        kind: ``channel``, ``depth``, ``derived`` (a product of others, computed once per evaluation),
            ``tokens`` (a token group's kept count of N; read, never multiplied itself) or ``schedule``
            (tokens a block runs on / tokens merged before it, computed from the ``tokens`` and block
            variables by :func:`hwsearch.pruning._tokens.token_schedule`).
        full: value when the group is not named in the widths (per-partition width; 1 for depth).
        partitions: channel groups: a widths value is ``per_partition × partitions``.
        unit: depth groups: the unit index this indicator stands for.
        units: depth groups: how many units the group has.
        definition: derived variables: the polynomial they stand for.
        scope: the block the variable belongs to (``block.3``, ``stage2.1``), None for global widths.
    """

    group: str
    kind: str
    full: int
    partitions: int = 1
    unit: int = 0
    units: int = 1
    definition: Poly | None = None
    scope: str | None = None


@dataclass(frozen=True, slots=True)
class SymLayer:
    """One symbolic row: polynomials for params, MACs per image (all T) and spike elements (all T)."""

    name: str
    kind: str
    params: Poly
    macs: Poly
    act: Poly
    input_lif: str | None = None
    live: bool = True

    @property
    def attention(self) -> bool:
        return self.kind == "matmul"


_BLOCK_SCOPE = re.compile(r"^(block\.\d+|stage\d+\.\d+)\.")


# -- which inputs are binary spikes (cost-conventions.md §4) -------------------------------------------
_ATTN = r"(block\.\d+\.attn)"
_RULES: dict[str, list[tuple[str, str]]] = {
    "spikformer": [
        (r"patch_embed\.proj_conv1", "patch_embed.proj_lif"),
        (r"patch_embed\.proj_conv2", "patch_embed.proj_lif1"),
        (r"patch_embed\.proj_conv3", "patch_embed.proj_lif2"),
        (r"patch_embed\.rpe_conv", "patch_embed.proj_lif3"),
        (_ATTN + r"\.proj_(?:conv|linear)", r"\1.attn_lif"),
        (r"(block\.\d+\.mlp)\.fc2_(?:conv|linear)", r"\1.fc1_lif"),
    ],
    "sdt": [
        (r"patch_embed\.proj_conv1", "patch_embed.proj_lif"),
        (r"patch_embed\.proj_conv2", "patch_embed.proj_lif1"),
        (r"patch_embed\.proj_conv3", "patch_embed.proj_lif2"),
        (r"patch_embed\.rpe_conv", "patch_embed.proj_lif3"),
        (_ATTN + r"\.[qkv]_conv", r"\1.shortcut_lif"),
        (_ATTN + r"\.proj_conv", r"\1.q_lif"),  # input q∘kv ≤ q: the q rate is an upper bound
        (r"(block\.\d+\.mlp)\.fc1_conv", r"\1.fc1_lif"),
        (r"(block\.\d+\.mlp)\.fc2_conv", r"\1.fc2_lif"),
        (r"head", "head_lif"),
    ],
    "qkformer": [
        (r"patch_embed1\.proj1_conv", "patch_embed1.proj_lif"),
        (r"patch_embed1\.proj2_conv", "patch_embed1.proj1_lif"),
        (r"patch_embed1\.proj_res_conv", "patch_embed1.proj_lif"),
        (r"(patch_embed[23])\.proj4_conv", r"\1.proj3_lif"),
        (r"(stage\d+\.\d+\.tssa)\.proj_conv", r"\1.k_lif"),  # input mask∘k ≤ k: upper bound
        (r"(stage\d+\.\d+\.(?:attn|ssa))\.proj_conv", r"\1.attn_lif"),
        (r"(stage\d+\.\d+\.mlp)\.fc2_conv", r"\1.fc1_lif"),
        (r"(stage\d+\.\d+\.mlp)\.mlp2_conv", r"\1.mlp1_lif"),
        (r"(stage\d+\.\d+\.(?:attn|ssa))\.matmul1", r"\1.k_lif"),  # kᵀ @ v
        (r"(stage\d+\.\d+\.(?:attn|ssa))\.matmul2", r"\1.q_lif"),  # q @ (kᵀ v)
    ],
}
_MATMUL_RULES = {  # Spikformer: operand order differs by layout
    "imagenet": [(_ATTN + r"\.matmul1", r"\1.k_lif"), (_ATTN + r"\.matmul2", r"\1.q_lif")],  # kᵀ@v, q@(kᵀv)
    "cifar": [(_ATTN + r"\.matmul1", r"\1.q_lif"), (_ATTN + r"\.matmul2", r"\1.v_lif")],  # q@kᵀ, (qkᵀ)@v
    "dvs": [(_ATTN + r"\.matmul1", r"\1.q_lif"), (_ATTN + r"\.matmul2", r"\1.v_lif")],
}
_COMPILED: dict[tuple[str, str], list[tuple[re.Pattern[str], str]]] = {}


def spike_input(family: str, layout: str, layer: str) -> str | None:
    """Name of the LIF whose spikes are ``layer``'s input, or None when the input is not binary.

    Non-binary inputs (pixels, the integer residual stream of Spikformer/QKFormer, the head on the
    T-mean) are MACs; binary ones are ACs whose count is SOP = fr × MACs. Where the input is a product
    of spike tensors (SDT ``q∘kv``, QKFormer ``mask∘k``) the rate of the LIF bounding it is used.
    Layer names may use any block numbering (original or renumbered after depth pruning).

    >>> spike_input("spikformer", "imagenet", "block.3.mlp.fc2_conv")
    'block.3.mlp.fc1_lif'
    >>> spike_input("spikformer", "imagenet", "block.3.mlp.fc1_conv") is None
    True
    """
    key = (family, layout)
    rules = _COMPILED.get(key)
    if rules is None:
        raw = _RULES.get(family, []) + (_MATMUL_RULES.get(layout, []) if family == "spikformer" else [])
        rules = _COMPILED[key] = [(re.compile(p), t) for p, t in raw]
    for pattern, template in rules:
        m = pattern.fullmatch(layer)
        if m:
            return m.expand(template)
    return None


@dataclass(frozen=True, slots=True)
class TokenPoint:
    """Variable indices of one token group: its count, its block's indicator (None: always there), the
    tokens the block runs on, the tokens merged before it, the tokens reaching the selector and whether
    a selector runs there (0/1)."""

    count: int
    alive: int | None
    tokens: int
    merged: int
    entering: int
    active: int

    def schedule(self) -> tuple[int, int, int, int]:
        """The schedule variables, in the order :meth:`values` fills them."""
        return (self.tokens, self.merged, self.entering, self.active)

    @staticmethod
    def values(point: object) -> tuple[int, int, int, int]:
        """Values of the schedule variables for one ``hwsearch.pruning._tokens.SelectionPoint``."""
        return (point.tokens, point.merged, point.entering, int(point.active))  # type: ignore[attr-defined]


class Builder:
    """Collects variables and symbolic layers for one configuration (T steps, family, layout).

    ``time_axis``: T is the variable of group ``T`` (kept steps; ``steps`` multiplies every per-step
    count); otherwise ``steps`` is the constant ``T``.
    """

    def __init__(self, *, family: str, layout: str, T: int, time_axis: bool = False,
                 token_score: str = "activity") -> None:
        self.family, self.layout, self.T, self.token_score = family, layout, T, token_score
        self.variables: list[Variable] = []
        self.layers: list[SymLayer] = []
        self.token_points: list[TokenPoint] = []
        self.token_width = 0
        self.steps: Poly | int = self.channel("T", T) if time_axis else T

    def tokens(self, scope: str, width: int, alive: Poly | int = 1) -> tuple[Poly, Poly, Poly, Poly]:
        """Token group ``<scope>.tokens`` of a stream of ``width`` tokens; returns the variables (tokens the
        block runs on, tokens merged into the package before it, tokens reaching the selector, selector
        runs 0/1). ``alive``: the block's depth indicator."""
        if self.token_width and width != self.token_width:
            raise ValueError(f"token groups of one model share one stream, got widths {self.token_width} and {width}")
        self.token_width = width
        self.variables.append(Variable(group=f"{scope}.tokens", kind="tokens", full=int(width), scope=scope))
        count = len(self.variables) - 1
        for full in (width, 0, width, 0):  # unpruned: all tokens, none merged, all reach it, no selector
            self.variables.append(Variable(group="", kind="schedule", full=int(full), scope=scope))
        alive_index = None
        if isinstance(alive, Poly) and alive.variables():
            (mono,) = alive.terms
            alive_index = mono[0]
        point = TokenPoint(count=count, alive=alive_index, tokens=count + 1, merged=count + 2, entering=count + 3,
                           active=count + 4)
        self.token_points.append(point)
        return tuple(Poly.var(i) for i in point.schedule())  # type: ignore[return-value]

    # -- variables --------------------------------------------------------------------------------------
    def channel(self, group: str, full: int, *, partitions: int = 1) -> Poly:
        """Variable for a channel group: kept units per partition (``full`` when not pruned)."""
        m = _BLOCK_SCOPE.match(group)
        self.variables.append(Variable(group=group, kind="channel", full=int(full), partitions=int(partitions),
                                       scope=m.group(1) if m else None))
        return Poly.var(len(self.variables) - 1)

    def depth(self, group: str, units: int, scopes: Sequence[str] | None = None) -> list[Poly]:
        """One 0/1 indicator per unit of a depth group (block or branch); ``scopes``: each unit's block."""
        out = []
        for u in range(units):
            self.variables.append(Variable(group=group, kind="depth", full=1, unit=u, units=units,
                                           scope=scopes[u] if scopes else None))
            out.append(Poly.var(len(self.variables) - 1))
        return out

    def derived(self, definition: Poly) -> Poly:
        """A new variable standing for ``definition`` (e.g. heads × per-head width), computed once."""
        if len(definition.terms) == 1 and sum(len(m) for m in definition.terms) <= 1:
            return definition  # a constant or a single variable needs no name
        scopes = {self.variables[i].scope for i in definition.variables()} - {None}
        if len(scopes) > 1:
            raise ValueError(f"derived variable mixes blocks {sorted(scopes)}")  # type: ignore[type-var]
        self.variables.append(Variable(group="", kind="derived", full=0, definition=definition,
                                       scope=scopes.pop() if scopes else None))
        return Poly.var(len(self.variables) - 1)

    # -- rows -------------------------------------------------------------------------------------------
    def _row(self, name: str, kind: str, *, params: Poly | int = 0, macs: Poly | int = 0, act: Poly | int = 0,
             alive: Poly | int = 1, live: bool = True) -> None:
        lif = spike_input(self.family, self.layout, name) if kind in ("conv", "linear", "matmul") else None
        self.layers.append(SymLayer(name=name, kind=kind, params=Poly.lift(params) * alive,
                                    macs=Poly.lift(macs) * alive, act=Poly.lift(act) * alive, input_lif=lif, live=live))

    def conv(self, name: str, cin: Poly | int, cout: Poly | int, *, k: int = 1, positions: Poly | int,
             bias: bool = False, alive: Poly | int = 1, per_image: bool = False, live: bool = True) -> None:
        """Conv (k = k_h·k_w taps, groups 1) at ``positions`` output positions, every step (or once)."""
        runs = 1 if per_image else self.steps
        params = Poly.lift(cin) * cout * k + (Poly.lift(cout) if bias else 0)
        self._row(name, "conv", params=params, macs=Poly.lift(cin) * cout * (k * positions * runs), alive=alive,
                  live=live)

    def linear(self, name: str, cin: Poly | int, cout: Poly | int, *, tokens: Poly | int, bias: bool = True,
               alive: Poly | int = 1, per_image: bool = False) -> None:
        runs = 1 if per_image else self.steps
        params = Poly.lift(cin) * cout + (Poly.lift(cout) if bias else 0)
        self._row(name, "linear", params=params, macs=Poly.lift(cin) * cout * (tokens * runs), alive=alive)

    def matmul(self, name: str, macs_per_step: Poly, *, alive: Poly | int = 1) -> None:
        self._row(name, "matmul", macs=macs_per_step * self.steps, alive=alive)

    def norm(self, name: str, channels: Poly | int, *, alive: Poly | int = 1, live: bool = True) -> None:
        """BatchNorm/LayerNorm: weight and bias, ``2·C`` parameters (running statistics are buffers)."""
        self._row(name, "norm", params=Poly.lift(channels) * 2, alive=alive, live=live)

    def lif(self, name: str, elements_per_step: Poly | int, *, alive: Poly | int = 1, params: int = 0,
            called: bool = True) -> None:
        """A LIF's output spikes over all T steps (``called=False``: built but never run)."""
        act = Poly.lift(elements_per_step) * self.steps if called else 0
        self._row(name, "lif", params=params, act=act, alive=alive, live=called)

    def param(self, name: str, numel: Poly | int, *, alive: Poly | int = 1, live: bool = True) -> None:
        self._row(name, "param", params=numel, alive=alive, live=live)
