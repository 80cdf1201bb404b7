"""What in a model is prunable: groups of tensor slices that must lose the same indices, and their registry.

A :class:`ChannelGroup` is what Torch-Pruning calls a dependency group, declared per family in
``search_spaces/`` instead of traced. It has ``width`` units (channels, or heads of ``unit_size``
channels in a given member), optional equal-size ``partitions`` (a q/k width group keeps the same
number of channels in every head), bounds, and the static attributes to update after slicing.

A :class:`DepthGroup` removes whole sub-modules from a ``ModuleList`` (blocks of a stage) or disables
a residual branch.

A :class:`TokenGroup` is a token keep ratio before one block (SPViT-style selection with a package
token) and the :class:`TimeGroup` the number of time steps T: neither removes weights, both shrink
the work (``hwsearch.pruning._tokens``).

A family declares its groups with :func:`register_groups` (one function per family returning the
groups of an unpruned model); :func:`groups_of` gives a built model's groups. The pruning engine
(``hwsearch.pruning``) slices what the groups name.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from hwsearch.errors import UserError
from hwsearch.registry import Registry

if TYPE_CHECKING:
    import torch.nn as nn

__all__ = ["Member", "AttrUpdate", "ChannelGroup", "DepthGroup", "TokenGroup", "TimeGroup", "Group", "GroupDeclaration",
           "GroupError", "GROUP_DECLARATIONS", "TOKEN_DECLARATIONS", "TIME_AXIS_LAYOUTS", "groups_of", "register_groups"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Member:
    """One tensor dimension a group shrinks: ``<module>.<param>`` along ``dim``.

    Unit ``u`` of the group covers indices ``[offset + u*unit_size, offset + (u+1)*unit_size)`` of that
    dimension. ``param`` may name a buffer (BatchNorm running statistics).
    """

    module: str
    param: str = "weight"
    dim: int = 0
    unit_size: int = 1
    offset: int = 0

    @property
    def key(self) -> str:
        return f"{self.module}.{self.param}" if self.module else self.param


@dataclass(frozen=True, slots=True, kw_only=True)
class AttrUpdate:
    """After pruning, set ``<module>.<attr>`` to ``kept_units * per_unit`` (e.g. ``num_heads``, ``c_hidden``)."""

    module: str
    attr: str
    per_unit: int = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelGroup:
    """A set of coupled tensor slices pruned together.

    Attributes:
        name: module-path-like name, e.g. ``"block.3.mlp.hidden"``.
        kind: axis kind: ``mlp``, ``heads``, ``qk``, ``v``, ``q``, ``k``, ``embed``, ``sps``, ``stage``,
            ``patch`` (families may add others).
        width: units in the unpruned model.
        members: the slices (parameters and buffers) that lose the pruned units' indices.
        unit: ``"channel"`` or ``"head"``.
        partitions: the units form this many equal contiguous partitions and a plan keeps the same
            number in each (q/k and v widths are per head: ``partitions = num_heads``).
        min_width: the fewest units a plan may keep (per partition when partitioned); never 0.
        round_to: kept units (per partition) must be a multiple of this, unless all are kept.
        attrs: static attributes updated from the kept count.
        importance_members: indices into ``members`` used for ranking (default: every parameter member,
            i.e. all but BatchNorm running statistics).
    """

    name: str
    kind: str
    width: int
    members: tuple[Member, ...]
    unit: str = "channel"
    partitions: int = 1
    min_width: int = 1
    round_to: int = 1
    attrs: tuple[AttrUpdate, ...] = ()

    def __post_init__(self) -> None:
        if self.width < 1 or self.width % self.partitions:
            raise ValueError(f"group {self.name}: width {self.width} not divisible into {self.partitions} partitions")
        if self.min_width < 1:
            raise ValueError(f"group {self.name}: min_width must be at least 1")

    @property
    def partition_width(self) -> int:
        return self.width // self.partitions

    def allowed_counts(self) -> list[int]:
        """Kept-unit counts a plan may use for this group (total over partitions), ascending."""
        per = self.partition_width
        counts = [k for k in range(self.min_width, per + 1) if k % self.round_to == 0 or k == per]
        return [k * self.partitions for k in counts]


@dataclass(frozen=True, slots=True, kw_only=True)
class DepthGroup:
    """Whole sub-modules that can be removed: blocks of a ``ModuleList`` or residual branches.

    Attributes:
        name: e.g. ``"block"`` (Spikformer blocks) or ``"stage3"``.
        container: path of the ``nn.ModuleList`` holding the units (``kind="blocks"``), or a tuple of
            branch module paths set to ``None`` when removed (``kind="branches"``).
        width: number of units (blocks or branches).
        min_width: the fewest units kept (0 allowed for branches: the residual carries the signal).
        attrs: static attributes set to the kept count (e.g. the model's ``depth``).
        units: for ``kind="branches"``, the module path of each unit.
    """

    name: str
    kind: str
    container: str
    width: int
    min_width: int = 1
    attrs: tuple[AttrUpdate, ...] = ()
    units: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenGroup:
    """The token keep ratio before one block: ``count / width`` of the tokens reaching that block stay.

    Keep ratios compose along the blocks (a plan keeping 32 of 64 before block 0 and 32 of 64 before
    block 1 lets 16 image tokens into block 1); the tokens that go are merged into one package token
    (SPViT), so a block after the first pruning point sees ``kept + 1`` tokens. Kept counts are per
    image (which tokens stay is decided at run time from the activations), so a plan gives a count, or
    any index tuple whose length is the count.

    Attributes:
        name: ``<block path>.tokens`` (``block.3.tokens``, ``stage3.0.tokens``).
        block: the module path of the block the selection runs before.
        width: tokens leaving the stem (N; the keep ratio's denominator).
        layout: token layout of the block input: ``cfhw`` ``[T,B,C,H,W]``, ``nc`` ``[T,B,N,C]``,
            ``cn`` ``[T,B,C,N]``.
        container, index: the depth container of the block and its index there (a block removed by
            depth pruning takes its selection with it).
    """

    name: str
    block: str
    width: int
    layout: str
    container: str
    index: int
    kind: str = "tokens"
    min_width: int = 1

    def allowed_counts(self) -> list[int]:
        return list(range(self.min_width, self.width + 1))


@dataclass(frozen=True, slots=True, kw_only=True)
class TimeGroup:
    """The number of time steps T the model runs (``width``: the trained T; a plan keeps 1..T)."""

    name: str = "T"
    width: int
    kind: str = "time"
    min_width: int = 1

    def allowed_counts(self) -> list[int]:
        return list(range(self.min_width, self.width + 1))


Group = ChannelGroup | DepthGroup | TokenGroup | TimeGroup


#: Layouts whose number of time steps T is a searchable axis (the DVS layouts' T is the data's).
TIME_AXIS_LAYOUTS = ("imagenet", "cifar")


class GroupError(UserError):
    """A model whose groups cannot be found (not built by hwsearch)."""


#: A family's declaration: an unpruned model -> its groups.
GroupDeclaration = Callable[["nn.Module"], Sequence[Group]]

#: family name -> function declaring the prunable groups of an (unpruned) model of that family.
GROUP_DECLARATIONS: Registry[GroupDeclaration] = Registry("family", list_command="hwsearch models")
#: family name -> function declaring the token groups (and the T group) of an unpruned model of that family.
TOKEN_DECLARATIONS: Registry[GroupDeclaration] = Registry("token family", list_command="hwsearch models")


def register_groups(family: str, declare: GroupDeclaration, *, kind: str = "weights") -> GroupDeclaration:
    """Declare the prunable groups of a model family: the public way to add a family's groups.

    ``declare(model)`` returns the groups of an unpruned model of ``family``. ``kind="weights"``: its
    channel and depth groups (one declaration per family); ``kind="tokens"``: its token groups and T
    group, appended to them. A second declaration of the same family and kind raises. Returns ``declare``.
    """
    registries = {"weights": GROUP_DECLARATIONS, "tokens": TOKEN_DECLARATIONS}
    if kind not in registries:
        raise ValueError(f"unknown group kind {kind!r}; expected one of {sorted(registries)}")
    registries[kind].add(family, declare)
    return declare


def groups_of(model: nn.Module) -> list[Group]:
    """The prunable groups of an unpruned registered model (declared in ``search_spaces/``)."""
    from search_spaces._registry import get_config

    name = getattr(model, "hwsearch_config", None)
    if name is None:
        raise GroupError("model was not built by hwsearch (no hwsearch_config); build it with create_model/load_model")
    family = get_config(name).family
    groups = list(GROUP_DECLARATIONS.get(family)(model))
    if family in TOKEN_DECLARATIONS:
        groups += TOKEN_DECLARATIONS.get(family)(model)
    return groups
