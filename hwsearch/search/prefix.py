"""Prefix reuse: the unpruned front of the network is computed once per evaluation batch.

A candidate that leaves the first modules of the feature path untouched (the SPS stem, the first
blocks) gets exactly the source model's activations at the end of that prefix. :class:`PrefixCache`
stores those activations per evaluation batch the first time any candidate computes them and replays
them afterwards: the candidate's pruned model runs with its prefix modules swapped for a module that
returns the stored tensor, so only the pruned suffix is computed.

The *chain* is found by tracing one forward of the source model (:func:`trace_chain`): the top-level
children and the elements of top-level ``ModuleList``\\ s, in call order, as long as each one's input is
the previous one's output object (``patch_embed -> block.0 -> block.1 ...``; QKFormer
``patch_embed1 -> stage1.0 -> patch_embed2 ...``). What the model does before the first chain module
(repeating the image over T) still runs, on a 1x1-pixel stand-in input, and so does everything after.

Stored activations are compact and exact: integer-valued tensors in ``[0, 255]`` (spikes, and the
integer residual sums of Spikformer) as ``uint8``, binary ones bit-packed (1 bit per element); anything
else is kept in its own dtype. Shape and strides are restored, so the suffix sees the same layout and
the logits and every suffix spike are ``torch.equal`` to a full forward (tested on every family).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn
from spikingjelly.activation_based import functional

from hwsearch.pruning import ChannelGroup, DepthGroup, Group, TimeGroup, TokenGroup

__all__ = ["Packed", "PrefixCache", "PrefixStats", "pack", "prefix_length", "touched_modules", "trace_chain",
           "forward_fn", "DEFAULT_PREFIX_CACHE_MB"]

log = logging.getLogger(__name__)

#: Default memory budget of a :class:`PrefixCache` (stored activations, all prefixes together).
DEFAULT_PREFIX_CACHE_MB = 1024.0


@dataclass(frozen=True, slots=True)
class Packed:
    """One activation tensor stored compactly (``kind``: ``bits``, ``uint8`` or ``raw``)."""

    kind: str
    data: torch.Tensor
    shape: tuple[int, ...]
    stride: tuple[int, ...]
    dtype: torch.dtype

    @property
    def nbytes(self) -> int:
        return self.data.numel() * self.data.element_size()

    def unpack(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """The stored tensor, bit for bit, with its original shape, strides and dtype, on ``device``."""
        n = int(np.prod(self.shape)) if self.shape else 1
        if self.kind == "bits":
            flat = torch.from_numpy(np.unpackbits(self.data.numpy(), count=n))
        else:
            flat = self.data
        values = flat.to(device=device, dtype=self.dtype).view(self.shape)
        if values.stride() == self.stride:
            return values
        out = torch.empty_strided(self.shape, self.stride, dtype=self.dtype, device=device)
        out.copy_(values)
        return out


def _dense_strides(t: torch.Tensor) -> bool:
    """Whether ``t`` covers its storage exactly once (a permutation of a contiguous layout)."""
    return t.numel() == 0 or t.is_contiguous() or t.permute(*np.argsort(t.stride())[::-1].tolist()).is_contiguous()


def pack(t: torch.Tensor) -> Packed:
    """Store ``t`` compactly and exactly (see the module docstring)."""
    t = t.detach()
    stride = tuple(t.stride()) if _dense_strides(t) else tuple(torch.empty(t.shape).stride())
    shape = tuple(t.shape)
    flat = t.contiguous().view(-1).cpu()
    if flat.is_floating_point() and flat.numel():
        lo, hi = float(flat.min()), float(flat.max())
        if lo >= 0 and hi <= 255 and bool(torch.equal(flat, flat.round())) and not bool(torch.signbit(flat).any()):
            small = flat.to(torch.uint8)
            if hi <= 1:
                return Packed("bits", torch.from_numpy(np.packbits(small.numpy())), shape, stride, t.dtype)
            return Packed("uint8", small, shape, stride, t.dtype)
    return Packed("raw", flat.clone(), shape, stride, t.dtype)


def _chain_candidates(model: nn.Module) -> list[tuple[str, nn.Module]]:
    out: list[tuple[str, nn.Module]] = []
    for name, child in model.named_children():
        if isinstance(child, nn.ModuleList):
            out.extend((f"{name}.{i}", m) for i, m in enumerate(child) if m is not None)
        elif child is not None:
            out.append((name, child))
    return out


@torch.no_grad()
def trace_chain(model: nn.Module, x: torch.Tensor) -> tuple[str, ...]:
    """Module names of the sequential front of ``model``'s forward (one traced forward on ``x``)."""
    calls: list[tuple[str, object, object]] = []
    handles = []
    for name, mod in _chain_candidates(model):
        def pre(m: nn.Module, args: tuple[object, ...], name: str = name) -> None:
            calls.append((name, args[0] if args else None, None))

        def post(m: nn.Module, args: tuple[object, ...], out: object, name: str = name) -> None:
            for i in range(len(calls) - 1, -1, -1):
                if calls[i][0] == name and calls[i][2] is None:
                    calls[i] = (name, calls[i][1], out)
                    break

        handles += [mod.register_forward_pre_hook(pre), mod.register_forward_hook(post)]
    was_training = model.training
    try:
        model.eval()
        functional.reset_net(model)
        model(x)
    finally:
        functional.reset_net(model)
        model.train(was_training)
        for h in handles:
            h.remove()
    chain: list[str] = []
    names = [c[0] for c in calls]
    for i, (name, inp, out) in enumerate(calls):
        if names.count(name) != 1 or not isinstance(out, torch.Tensor):
            break
        if i and inp is not calls[i - 1][2]:
            break
        chain.append(name)
    return tuple(chain)


def touched_modules(groups: Sequence[Group], keep: Mapping[str, Sequence[int] | int]) -> set[str]:
    """Modules whose tensors or attributes a resolved plan changes (groups kept whole are skipped)."""
    by_name = {g.name: g for g in groups}
    touched: set[str] = set()
    for name, kept in keep.items():
        g = by_name[name]
        count = kept if isinstance(kept, int) else len(kept)
        if count >= g.width:
            continue
        if isinstance(g, ChannelGroup):
            touched |= {m.module for m in g.members} | {a.module for a in g.attrs}
        elif isinstance(g, TokenGroup):  # a selector runs before the block (at most: an earlier one did)
            touched.add(g.block)
        elif isinstance(g, TimeGroup):  # every activation changes
            touched.add("")
        elif isinstance(g, DepthGroup):
            if isinstance(kept, int):  # unresolved count: which units go is not known, so all may
                touched |= {g.container} if g.kind == "blocks" else set(g.units)
            else:
                removed = [i for i in range(g.width) if i not in set(kept)]
                touched |= {f"{g.container}.{i}" if g.kind == "blocks" else g.units[i] for i in removed}
    return touched


def prefix_length(chain: Sequence[str], touched: Iterable[str]) -> int:
    """How many leading chain modules hold none of ``touched`` (nor are inside one of them)."""
    touched = list(touched)
    for k, name in enumerate(chain):
        if any(t == name or t.startswith(name + ".") or name.startswith(t + ".") or t == "" for t in touched):
            return k
    return len(chain)


class _Replay(nn.Module):
    """Stands in for the last prefix module: returns the stored activation, ignores its input."""

    def __init__(self) -> None:
        super().__init__()
        self.value: torch.Tensor | None = None

    def forward(self, *args: object, **kwargs: object) -> torch.Tensor:
        assert self.value is not None
        return self.value


class _Skip(nn.Module):
    def forward(self, x: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        return x


def _swap(model: nn.Module, name: str, new: nn.Module) -> nn.Module:
    parent, _, child = name.rpartition(".")
    holder = model.get_submodule(parent) if parent else model
    old = holder[int(child)] if isinstance(holder, nn.ModuleList) else getattr(holder, child)
    if isinstance(holder, nn.ModuleList):
        holder[int(child)] = new
    else:
        setattr(holder, child, new)
    return old


@dataclass
class PrefixStats:
    """Counters: batches replayed from the cache, batches computed in full, bytes stored."""

    hits: int = 0
    misses: int = 0
    stored_bytes: int = 0
    entries: int = 0
    skipped: int = 0  # activations not stored because the budget was full


@dataclass
class PrefixCache:
    """Stored prefix activations of the evaluation batches, keyed by (prefix length, batch index).

    Lifecycle: built by the evaluator with the traced ``chain``; for each batch of a candidate whose
    first ``k`` chain modules are untouched, :meth:`forward` either replays the stored activation of
    ``chain[k-1]`` (a hit) or runs the whole model and stores that activation on the way (a miss, while
    the ``budget_mb`` allows). ``k = 0`` is a plain forward. Outputs are always those of a full forward.
    """

    chain: tuple[str, ...]
    budget_mb: float = DEFAULT_PREFIX_CACHE_MB
    stats: PrefixStats = field(default_factory=PrefixStats)
    _store: dict[tuple[int, int], Packed] = field(default_factory=dict)

    def forward(self, model: nn.Module, x: torch.Tensor, *, k: int, index: int) -> torch.Tensor:
        """Logits of ``model`` on batch ``index`` (input ``x``) reusing its first ``k`` chain modules."""
        logits: torch.Tensor  # nn.Module.__call__ returns Any
        if k <= 0 or not self.chain:
            logits = model(x)
            return logits
        k = min(k, len(self.chain))
        packed = self._store.get((k, index))
        if packed is not None:
            self.stats.hits += 1
            with self._replaying(model, k, packed.unpack(x.device)):
                logits = model(_stand_in(x))
                return logits
        self.stats.misses += 1
        if self.stats.stored_bytes >= self.budget_mb * 1e6:
            self.stats.skipped += 1
            logits = model(x)
            return logits
        with self._capturing(model, self.chain[k - 1], (k, index)):
            logits = model(x)
            return logits

    @contextlib.contextmanager
    def _replaying(self, model: nn.Module, k: int, value: torch.Tensor) -> Iterator[None]:
        replay = _Replay()
        replay.value = value
        olds = [(name, _swap(model, name, _Skip() if i < k - 1 else replay)) for i, name in enumerate(self.chain[:k])]
        try:
            yield
        finally:
            for name, old in olds:
                _swap(model, name, old)

    @contextlib.contextmanager
    def _capturing(self, model: nn.Module, name: str, key: tuple[int, int]) -> Iterator[None]:
        def hook(m: nn.Module, args: tuple[object, ...], out: torch.Tensor) -> None:
            packed = pack(out)
            self._store[key] = packed
            self.stats.stored_bytes += packed.nbytes
            self.stats.entries += 1

        handle = model.get_submodule(name).register_forward_hook(hook)
        try:
            yield
        finally:
            handle.remove()

    def clear(self) -> None:
        self._store.clear()
        self.stats.stored_bytes = self.stats.entries = 0


def _stand_in(x: torch.Tensor) -> torch.Tensor:
    """A 1x1-pixel input with ``x``'s leading dimensions: what runs before the replayed prefix is cheap."""
    return x.new_zeros((*x.shape[:-2], 1, 1)) if x.dim() >= 3 else x


def forward_fn(cache: PrefixCache | None, model: nn.Module, k: int) -> Callable[[int, torch.Tensor], torch.Tensor]:
    """``(batch index, x) -> logits`` for :func:`hwsearch.search.metrics.correct_per_batch`."""
    if cache is None or k <= 0:
        return lambda i, x: model(x)
    return lambda i, x: cache.forward(model, x, k=k, index=i)
