"""Token keep ratios and time steps in plans: the schedule of kept tokens, and applying it to a model.

A plan keeps ``c`` of ``N`` for a :class:`~hwsearch.pruning.TokenGroup` (N tokens leave the stem): the
block it names then receives ``max(1, n * c // N)`` of the ``n`` image tokens that reach it (keep ratios
compose along the blocks), plus the package token once any selection has pruned. :func:`token_schedule`
is the one definition of these numbers, used by :func:`apply_tokens` (what the pruned model runs) and
by the analytic cost model (what it counts). A :class:`~hwsearch.pruning.TimeGroup` count sets the
model's ``T``. A block removed by depth pruning takes its selection with it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn as nn

from search_spaces.groups import DepthGroup, Group, TimeGroup, TokenGroup

if TYPE_CHECKING:
    from search_spaces.tokens import TokenSelector

__all__ = ["SelectionPoint", "token_schedule", "removed_blocks", "selection_points", "apply_tokens",
           "attach_selector", "block_width", "selectors", "learn_token_scores", "keep_ratio_loss"]

#: layouts whose T is a constructor choice (event-frame layouts take T from the input: no T axis)


@dataclass(frozen=True, slots=True)
class SelectionPoint:
    """The token flow at one token group: image tokens after it, tokens merged there, package present.

    ``tokens`` (= ``image + package``) is what the block runs on; ``merged`` > 0 only where a selector
    actually runs (it merges ``merged`` tokens, the previous package included, into the new package);
    ``entering``: the tokens reaching the selector (image + earlier package; what a scorer reads).
    """

    image: int
    merged: int
    package: bool
    entering: int = 0

    @property
    def tokens(self) -> int:
        return self.image + int(self.package)

    @property
    def active(self) -> bool:
        return self.merged > 0


def token_schedule(width: int, points: Sequence[tuple[int, bool]]) -> list[SelectionPoint]:
    """The token flow of one token stream of ``width`` tokens.

    Args:
        width: tokens leaving the stem (N).
        points: per token group in block order, ``(kept count c of N, block alive)``.

    >>> [(p.image, p.merged, p.package) for p in token_schedule(64, [(32, True), (64, True), (32, True)])]
    [(32, 32, True), (32, 0, True), (16, 17, True)]
    """
    n, package, out = width, False, []
    for count, alive in points:
        entering = n + int(package)
        k = max(1, n * count // width) if alive else n
        merged = (n - k) + int(package) if k < n else 0
        package = package or k < n
        n = k
        out.append(SelectionPoint(image=n, merged=merged, package=package, entering=entering))
    return out


def removed_blocks(groups: Sequence[Group], keep: Mapping[str, int | tuple[int, ...]]) -> set[str]:
    """Module paths of the blocks a resolved plan removes (depth groups of kind ``blocks``)."""
    out: set[str] = set()
    for g in groups:
        if isinstance(g, DepthGroup) and g.kind == "blocks" and isinstance(keep.get(g.name), tuple):
            kept = set(keep[g.name])  # type: ignore[arg-type]
            out |= {f"{g.container}.{i}" for i in range(g.width) if i not in kept}
    return out


def selection_points(groups: Sequence[Group], keep: Mapping[str, int | tuple[int, ...]]
                     ) -> list[tuple[TokenGroup, SelectionPoint]]:
    """Every token group of ``groups`` with its flow under a resolved ``keep`` (declaration order)."""
    tokens = [g for g in groups if isinstance(g, TokenGroup)]
    if not tokens:
        return []
    gone = removed_blocks(groups, keep)

    def count(g: TokenGroup) -> int:
        v = keep.get(g.name, g.width)
        return v if isinstance(v, int) else len(v)

    flow = token_schedule(tokens[0].width, [(count(g), g.block not in gone) for g in tokens])
    return list(zip(tokens, flow))


def _select_hook(module: nn.Module, args: tuple[object, ...]) -> tuple[object, ...]:
    """Forward pre-hook of a block with a token selector: the block runs on the selected tokens."""
    return (module.token_select(args[0]), *args[1:])  # type: ignore[operator]


def attach_selector(block: nn.Module, selector: nn.Module) -> None:
    """Run ``selector`` on ``block``'s input: a child ``token_select`` (its parameters, if any, are saved
    with the model; listed first, as it runs first) and a forward pre-hook (the block's own forward and
    state_dict keys are unchanged)."""
    if hasattr(block, "token_select"):
        raise ValueError("block already has a token selector")
    children = dict(block._modules)  # the selector runs first, so it is listed first (module order = call order)
    block._modules.clear()
    block.token_select = selector
    block._modules.update(children)
    block.register_forward_pre_hook(_select_hook)


def block_width(block: nn.Module) -> int:
    """The width of a block's input: the input width of its first conv/linear layer."""
    for name, m in block.named_modules():
        if name.startswith("token_select"):
            continue
        if isinstance(m, nn.Linear):
            return int(m.in_features)
        if isinstance(m, nn.modules.conv._ConvNd):
            return int(m.in_channels)
    raise ValueError("block has no conv or linear layer to read its width from")


def selectors(model: nn.Module) -> list[TokenSelector]:
    """The token selectors of a pruned model, in module order."""
    from search_spaces.tokens import TokenSelector

    return [m for m in model.modules() if isinstance(m, TokenSelector)]


def learn_token_scores(model: nn.Module) -> int:
    """Give every token selector of ``model`` a trainable SPViT scorer (initialised to rank like
    ``activity``); the model's plan records ``token_score="learned"`` so that ``save_pruned`` /
    ``load_pruned`` rebuild it. Returns the number of selectors converted."""
    import dataclasses

    from search_spaces.tokens import LEARNED, LearnedScorer

    n = 0
    for name, m in model.named_modules():
        if name.endswith("token_select") and getattr(m, "scorer", None) is None:
            block = model.get_submodule(name.rpartition(".")[0])
            m.scorer = LearnedScorer(block_width(block))
            m.score = LEARNED
            n += 1
    plan = getattr(model, "hwsearch_plan", None)
    if n and plan is not None:
        model.hwsearch_plan = dataclasses.replace(plan, token_score=LEARNED)
    return n


def keep_ratio_loss(model: nn.Module) -> torch.Tensor | None:
    """SPViT's computation-aware term of the last training forward: Σ over learned selectors of
    (mean keep score of the image tokens - the keep ratio the plan's budget fixed)²; None without any."""
    terms = []
    for m in selectors(model):
        last = getattr(m, "last_keep", None)
        if last is not None:
            mean, target = last
            terms.append((mean - target) ** 2)
            m.last_keep = None
    return torch.stack(terms).sum() if terms else None


def apply_tokens(model: nn.Module, groups: Sequence[Group], keep: Mapping[str, int | tuple[int, ...]],
                 *, score: str = "activity") -> None:
    """Insert the token selectors and set T of a resolved plan on ``model`` (in place, before depth pruning)."""
    from search_spaces.tokens import LEARNED, TokenSelector

    package = False
    for g, point in selection_points(groups, keep):
        if point.active:
            v = keep[g.name]
            block = model.get_submodule(g.block)
            selector = TokenSelector(count=v if isinstance(v, int) else len(v), width=g.width, layout=g.layout,
                                     has_package=package, score=score,
                                     channels=block_width(block) if score == LEARNED else None)
            attach_selector(block, selector)
        package = point.package
    for group in groups:
        if isinstance(group, TimeGroup) and group.name in keep:
            v = keep[group.name]
            model.T = v if isinstance(v, int) else len(v)  # type: ignore[assignment]  # torch types module attributes as Tensor | Module
