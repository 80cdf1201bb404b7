"""search_spaces._fastops: batch norm over the last dim and spike attention equal the official ops bit for bit.

Whole models are compared fast against reference in test_fastlif.py (every family, the demo checkpoint,
the official vectors); here each operation alone, on random shapes and on the edges of its conditions.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from search_spaces import reference_lif
from search_spaces._fastops import batch_norm_last_dim, spike_attention


def _bn(c: int, g: torch.Generator) -> nn.BatchNorm1d:
    bn = nn.BatchNorm1d(c).eval()
    with torch.no_grad():
        bn.running_mean.normal_(generator=g)
        bn.running_var.uniform_(0.01, 4.0, generator=g)
        bn.weight.normal_(generator=g)
        bn.bias.normal_(generator=g)
    return bn


def test_batch_norm_last_dim_equals_official_on_random_shapes() -> None:
    g = torch.Generator().manual_seed(0)
    for _ in range(40):
        m, n, c = (int(torch.randint(1, hi, (1,), generator=g)) for hi in (30, 70, 300))
        bn = _bn(c, g)
        y = torch.randn(m, n, c, generator=g) * 4
        official = bn(y.transpose(-1, -2)).transpose(-1, -2)
        with torch.no_grad():
            fast = batch_norm_last_dim(bn, y.clone())
        assert fast.is_contiguous() and torch.equal(fast, official), (m, n, c)


def test_batch_norm_last_dim_keeps_the_official_path_when_it_must() -> None:
    g = torch.Generator().manual_seed(1)
    bn = _bn(16, g)
    y = torch.randn(3, 5, 16, generator=g)
    assert not batch_norm_last_dim(bn, y.clone()).is_contiguous()  # grad enabled: official transposed view
    with torch.no_grad(), reference_lif():
        assert not batch_norm_last_dim(bn, y.clone()).is_contiguous()
    bn.train()
    with torch.no_grad():
        out = batch_norm_last_dim(bn, y.clone())  # batch statistics: the official path
    assert not out.is_contiguous() and abs(out.mean().item()) < 1.0


@pytest.mark.parametrize("scale_before_v", [True, False])
@pytest.mark.parametrize("scale", [0.125, 0.25, 0.2])
def test_spike_attention_equals_official_order(scale_before_v: bool, scale: float) -> None:
    g = torch.Generator().manual_seed(2)
    for n, d in [(64, 16), (196, 64), (7, 3)]:
        q, k, v = ((torch.rand(2, 3, 4, n, d, generator=g) < 0.3).float() for _ in range(3))
        attn = q @ k.transpose(-2, -1)
        official = (attn * scale) @ v if scale_before_v else (attn @ v) * scale
        with torch.no_grad():
            fast = spike_attention(q, k, v, scale, scale_before_v=scale_before_v)
            with reference_lif():
                forced = spike_attention(q, k, v, scale, scale_before_v=scale_before_v)
        assert torch.equal(fast, official) and torch.equal(forced, official), (n, d)
