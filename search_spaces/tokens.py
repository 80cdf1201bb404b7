"""Token selection with a package token (SPViT, arXiv 2112.13890) for spike tensors.

A :class:`TokenSelector` runs before one block: per image it scores the image tokens, keeps the
``keep`` best ones (in their original order) and merges the rest, together with the package token
of an earlier selection if there is one, into a single package token appended last: the weighted
mean of the merged tokens' features, weights = their scores (SPViT's score-weighted package). The
token set is chosen once per image and held for all T steps (membrane state is per token).

Scores come from a registered rule (:data:`TOKEN_SCORES`); ``activity`` (Σ|x| over T and channels:
the number of spikes a token carries in the integer residual stream of Spikformer/QKFormer, the L1
mass of SDT's membrane stream) needs no training, so a pretrained checkpoint can be searched as is.

Cost (counted by ``costmodels``): the merge is one batched matmul, ``T · C · m`` MACs per image for
``m`` merged tokens (the scores and the normalisation are element-wise, not MACs). The package token is
real-valued; the layers that read it (q/k/v and fc1 in Spikformer/QKFormer, the shortcut LIFs in SDT)
read a non-binary stream anyway, so no SOP/MAC classification changes.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn

from hwsearch.registry import Registry

__all__ = ["TOKEN_SCORES", "TOKEN_LAYOUTS", "LEARNED", "SELECTOR_HEADS", "LearnedScorer", "TokenSelector", "to_tokens",
           "from_tokens", "activity_scores"]

#: the score rule of SPViT's trained selector (:class:`LearnedScorer`; trained by ``hwsearch finetune``)
LEARNED = "learned"
#: heads of the learned selector
SELECTOR_HEADS = 4

#: Token layouts of a block's input: the tensor shape the selector reads and writes.
TOKEN_LAYOUTS = ("cfhw", "nc", "cn")

#: score rule name -> ``fn(tokens [B,N,T,C]) -> scores [B,N]`` (higher = keep).
TOKEN_SCORES: Registry[Callable[[torch.Tensor], torch.Tensor]] = Registry(
    "token score", list_command="python -c 'import search_spaces.tokens as t; print(t.TOKEN_SCORES.list())'")


@TOKEN_SCORES.register("activity")
def activity_scores(tokens: torch.Tensor) -> torch.Tensor:
    """Σ|x| over time steps and channels: spikes carried by each token (training-free)."""
    return tokens.abs().sum(dim=(2, 3))


class LearnedScorer(nn.Module):
    """SPViT's light multi-head token selector: per head a linear keep score of each token's time-mean
    features, squashed to (0, 1), combined by learned head weights (softmax).

    Cost: ``proj`` runs once per image on the time mean (``N · C · heads`` MACs for N incoming tokens);
    the mean, sigmoid and weighting are element-wise. Initialised so that it ranks tokens like
    ``activity`` on a non-negative stream (equal positive weights on every channel).
    """

    def __init__(self, channels: int, heads: int = SELECTOR_HEADS) -> None:
        super().__init__()
        self.proj = nn.Linear(channels, heads)
        self.mix = nn.Parameter(torch.zeros(heads))
        with torch.no_grad():
            self.proj.weight.fill_(1.0 / channels)
            self.proj.bias.fill_(-1.0)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """``[B, N, T, C]`` -> keep scores ``[B, N]`` in (0, 1)."""
        keep = torch.sigmoid(self.proj(tokens.mean(dim=2)))  # [B, N, heads]
        return (keep * torch.softmax(self.mix, dim=0)).sum(dim=-1)


def to_tokens(x: torch.Tensor, layout: str) -> torch.Tensor:
    """A block input in ``layout`` as ``[B, N, T, C]``."""
    if layout == "cfhw":
        return x.flatten(3).permute(1, 3, 0, 2)
    if layout == "nc":
        return x.permute(1, 2, 0, 3)
    if layout == "cn":
        return x.permute(1, 3, 0, 2)
    raise ValueError(f"unknown token layout {layout!r}; one of {TOKEN_LAYOUTS}")


def from_tokens(t: torch.Tensor, layout: str) -> torch.Tensor:
    """``[B, N, T, C]`` back to ``layout`` (``cfhw``: ``[T,B,C,N,1]``, a 1-wide token grid), contiguous."""
    if layout == "cfhw":
        return t.permute(2, 0, 3, 1).unsqueeze(-1).contiguous()
    if layout == "nc":
        return t.permute(2, 0, 1, 3).contiguous()
    if layout == "cn":
        return t.permute(2, 0, 3, 1).contiguous()
    raise ValueError(f"unknown token layout {layout!r}; one of {TOKEN_LAYOUTS}")


class TokenSelector(nn.Module):
    """Keeps ``count / width`` of the incoming image tokens per image; merges the others into one package.

    Args:
        count, width: the keep ratio: of ``n`` incoming image tokens ``max(1, n * count // width)`` stay
            (``hwsearch.pruning._tokens.token_schedule``; ``width`` is the token count of the stem).
        layout: the block input layout (:data:`TOKEN_LAYOUTS`).
        has_package: whether the input already ends with a package token (an earlier selection);
            it is never kept as an image token and is merged into the new package token.
        score: a registered score rule (``activity``) or ``learned`` (a :class:`LearnedScorer` of
            ``channels`` inputs, child ``scorer``).
        channels: the block's input width (``learned`` only).

    Input and output are in ``layout``; the output has ``kept + 1`` tokens (``cfhw``: ``H = kept + 1,
    W = 1``). An input with nothing to prune passes unchanged. Deterministic: ties in score keep the
    lower token index.
    """

    scorer: LearnedScorer | None

    def __init__(self, *, count: int, width: int, layout: str, has_package: bool = False,
                 score: str = "activity", channels: int | None = None) -> None:
        super().__init__()
        if not 1 <= count <= width:
            raise ValueError(f"a token selector keeps 1..{width} of {width} tokens, got {count}")
        if layout not in TOKEN_LAYOUTS:
            raise ValueError(f"unknown token layout {layout!r}; one of {TOKEN_LAYOUTS}")
        if score == LEARNED:
            if not channels:
                raise ValueError("a learned token selector needs the block's input width (channels)")
            self.scorer = LearnedScorer(channels)
        else:
            TOKEN_SCORES.get(score)
            self.scorer = None
        self.count, self.width, self.layout, self.has_package, self.score = count, width, layout, has_package, score
        #: (mean keep score of the image tokens, target keep ratio) of the last training forward (the
        #: computation-aware loss of hwsearch.finetune reads it); None outside training
        self.last_keep: tuple[torch.Tensor, float] | None = None

    def extra_repr(self) -> str:
        return (f"count={self.count}, width={self.width}, layout={self.layout!r}, has_package={self.has_package}, "
                f"score={self.score!r}")

    def kept(self, n_image: int) -> int:
        """Image tokens kept of ``n_image`` incoming ones."""
        return max(1, n_image * self.count // self.width)

    def scores(self, tokens: torch.Tensor) -> torch.Tensor:
        """Scores ``[B, N]`` of every token of ``tokens`` ``[B, N, T, C]`` (package included, if any)."""
        if self.scorer is not None:
            scores: torch.Tensor = self.scorer(tokens)
            return scores
        return TOKEN_SCORES.get(self.score)(tokens)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = to_tokens(x, self.layout)  # [B, N, T, C]
        B, N, T, C = tokens.shape
        n_img = N - 1 if self.has_package else N
        k = self.kept(n_img)
        if k >= n_img:
            return x
        scores = self.scores(tokens)
        if self.training and self.scorer is not None:
            self.last_keep = (scores[:, :n_img].mean(), k / n_img)
        order = torch.sort(scores[:, :n_img], dim=1, descending=True, stable=True).indices
        kept = torch.sort(order[:, :k], dim=1).values
        merged = torch.sort(order[:, k:], dim=1).values
        if self.has_package:
            merged = torch.cat([merged, torch.full((B, 1), N - 1, dtype=merged.dtype, device=merged.device)], dim=1)

        def gather(idx: torch.Tensor) -> torch.Tensor:
            return tokens.gather(1, idx[:, :, None, None].expand(-1, -1, T, C))

        w = scores.gather(1, merged).to(tokens.dtype)  # [B, m]
        total = w.sum(dim=1, keepdim=True)
        w = torch.where(total > 0, w / total.clamp_min(torch.finfo(w.dtype).tiny), torch.zeros_like(w))
        package = torch.bmm(w.unsqueeze(1), gather(merged).reshape(B, -1, T * C)).reshape(B, 1, T, C)
        return from_tokens(torch.cat([gather(kept), package], dim=1), self.layout)
