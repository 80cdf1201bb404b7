"""A fast CPU inference path for spikingjelly 2.0's multi-step ``LIFNode``, bit-identical to it.

Why: on CPU, spikingjelly 2.0 runs a float32 multi-step LIF as the custom op ``torch.ops.sj_lif.forward``
whose CPU (and AutogradCPU) kernel is the Python reference ``spikingjelly._ops.lif.reference.
_forward_impl`` (other dtypes run the same formulas in ``reference.multi_step``): per time step about ten
full-size temporaries, the surrogate ``autograd.Function`` (also under ``no_grad``), then a stack of
the spikes and a stack of the charged potentials that only backward needs. spikingjelly has no
inference-only variant on CPU: ``functional.lif_multi_step`` always takes that path (explicit
``neuron_storage`` precision is Triton-only) and its fused kernels are CUDA/Triton-only.

:class:`FastLIFNode` is a ``LIFNode`` whose multi-step forward, when no gradient can be needed, runs
:func:`lif_multi_step_inference` instead: the same float operations in the same order, in place, over
cache-sized blocks of neurons (all ``T`` steps of one block before the next), with no autograd and no
stacks. Everything else (state, ``reset``, ``step_mode``, hooks, monitors, pickling, repr) is
``LIFNode``'s, and so is every forward on CUDA, where spikingjelly's fused kernel is already one pass.

The arithmetic, read from ``spikingjelly/_ops/lif/reference.py`` and ``_ops/reset.py`` (decay_input,
hard reset to ``v_reset = 0.0``)::

    h = v + (x - (v - 0.0)) / tau          # charge
    s = heaviside(h - v_threshold)         # (h - th >= 0).to(dtype)
    v = s * 0.0 + (1.0 - s) * h            # hard reset

and here, per block, in the input dtype:

* ``h = x - v; h /= tau; h += v``: ``v - 0.0`` is ``v`` bit for bit and IEEE addition commutes;
* ``s = (h >= th)``: the same as ``h - th >= 0`` for every float (``h - th`` is zero only if ``h == th``,
  infinities and nan compare alike);
* ``v = h * (h < th)``: for finite ``h`` the factor is exactly ``1 - s``; ``+inf`` gives ``nan`` as in
  the reference, ``nan`` stays ``nan``, ``-inf`` stays ``-inf``. The reference's trailing ``+ 0.0``
  only turns ``-0.0`` into ``+0.0``; with a positive threshold ``v`` starts at ``+0.0`` and ``h`` can
  then never be ``-0.0`` (a sum is ``-0.0`` only if both terms are), so even zero signs agree.

Use the reference path with ``HWSEARCH_REFERENCE_LIF=1`` in the environment (read at every call) or
inside ``with reference_lif():``.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Iterator

import torch
from spikingjelly.activation_based import neuron, surrogate

__all__ = [
    "FastLIFNode",
    "REFERENCE_LIF_ENV",
    "fast_path_applies",
    "lif_multi_step_inference",
    "reference_lif",
    "reference_lif_forced",
]

#: Environment variable that, set to anything but ``""``/``"0"``, forces spikingjelly's own path.
REFERENCE_LIF_ENV = "HWSEARCH_REFERENCE_LIF"

#: Neurons per block of :func:`lif_multi_step_inference`: its three scratch buffers stay in L2/L3.
BLOCK_BYTES = 1 << 20

#: Dtypes spikingjelly computes in the input dtype (float32 via ``sj_lif``, the others in its reference).
FAST_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)

_FORCE_REFERENCE: contextvars.ContextVar[bool] = contextvars.ContextVar("hwsearch_reference_lif", default=False)


@contextlib.contextmanager
def reference_lif() -> Iterator[None]:
    """Within the block every :class:`FastLIFNode` runs spikingjelly's own path (tests, benchmarks).

    >>> with reference_lif():
    ...     reference_lif_forced()
    True
    """
    token = _FORCE_REFERENCE.set(True)
    try:
        yield
    finally:
        _FORCE_REFERENCE.reset(token)


def reference_lif_forced() -> bool:
    """True inside :func:`reference_lif` or when ``HWSEARCH_REFERENCE_LIF`` is set (not ``""``/``"0"``)."""
    return _FORCE_REFERENCE.get() or os.environ.get(REFERENCE_LIF_ENV, "") not in ("", "0")


@torch.no_grad()
def lif_multi_step_inference(
    x_seq: torch.Tensor, v: torch.Tensor, tau: float, v_threshold: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Multi-step LIF (decay_input, hard reset to 0) without autograd: ``(spikes, final v)``.

    Args:
        x_seq: input ``[T, *]``, ``T >= 1``, on CPU, a dtype in :data:`FAST_DTYPES`.
        v: initial membrane potential shaped ``x_seq.shape[1:]``, same dtype and device; not modified.
        tau: membrane time constant (> 1).
        v_threshold: firing threshold.

    Returns:
        Spikes (contiguous, ``x_seq``'s shape and dtype, values 0/1) and the final potential (laid out
        like ``x_seq[0]``), both equal bit for bit to ``functional.lif_multi_step``'s.
    """
    T = x_seq.shape[0]
    spikes = torch.empty(x_seq.shape, dtype=x_seq.dtype, device=x_seq.device)
    v_out = torch.empty_like(x_seq[0])  # the layout spikingjelly's last reset step leaves
    strided = not v_out.is_contiguous()
    x2, s2, v_in = x_seq.reshape(T, -1), spikes.view(T, -1), v.reshape(-1)
    v_flat = torch.empty_like(v_in) if strided else v_out.view(-1)
    n = x2.shape[1]
    block = max(1, BLOCK_BYTES // x_seq.element_size())
    a, b, keep = (x_seq.new_empty(min(block, n)) for _ in range(3))
    for start in range(0, n, block):
        stop = min(start + block, n)
        bufs, k = (a[: stop - start], b[: stop - start]), keep[: stop - start]
        cur = v_in[start:stop]
        for t in range(T):
            h = bufs[t & 1]  # never `cur`: the buffer written is the one read two steps ago
            torch.sub(x2[t, start:stop], cur, out=h)
            h.div_(tau)
            h.add_(cur)
            torch.ge(h, v_threshold, out=s2[t, start:stop])
            torch.lt(h, v_threshold, out=k)
            cur = torch.mul(h, k, out=v_flat[start:stop] if t == T - 1 else h)
    if strided:
        v_out.copy_(v_flat.view(v_out.shape))
    return spikes, v_out


def dispatch_mode_active() -> bool:
    """A TorchDispatchMode (op counters, FakeTensor) is active: it should record spikingjelly's ops."""
    return bool(torch._C._len_torch_dispatch_stack())


def fast_path_applies(node: neuron.LIFNode, x_seq: object) -> bool:
    """Whether ``node``'s multi-step forward on ``x_seq`` may skip spikingjelly (before the state check).

    Only when the result cannot differ: grad disabled, or eval mode with an input that does not require
    grad (the Taylor criterion runs eval mode *with* grad and keeps its surrogate gradients); a CPU float
    input with ``T >= 1``; the official configuration (decay_input, hard reset to 0.0, a built-in
    spiking surrogate, no ``store_v_seq``, no explicit neuron precision); no dispatch mode active (op
    counters and FakeTensor tracing record spikingjelly's own ops); not forced off by :func:`reference_lif`.
    The membrane state must not require grad either; :class:`FastLIFNode` checks that afterwards.
    """
    if not isinstance(x_seq, torch.Tensor):
        return False
    if torch.is_grad_enabled() and (node.training or x_seq.requires_grad):
        return False
    sg = node.surrogate_function
    return (
        x_seq.device.type == "cpu"
        and x_seq.dtype in FAST_DTYPES
        and x_seq.dim() >= 2
        and x_seq.shape[0] >= 1
        and x_seq.numel() > 0
        and node.decay_input
        and node.v_reset == 0.0
        and not node.store_v_seq
        and node._neuron_precision is None
        and type(sg).__module__ == surrogate.__name__
        and isinstance(sg, surrogate.SurrogateFunctionBase)
        and bool(getattr(sg, "spiking", False))
        and not dispatch_mode_active()
        and not reference_lif_forced()
    )


class FastLIFNode(neuron.LIFNode):  # type: ignore[misc]  # spikingjelly has no type information
    """``spikingjelly.activation_based.neuron.LIFNode`` with a fast, bit-identical CPU inference path.

    Constructed, stored, reset, pickled and printed exactly like ``LIFNode`` (no state_dict entries;
    repr says ``LIFNode``). A multi-step forward that needs no gradient (see :func:`fast_path_applies`)
    computes spikes and the final ``v`` with :func:`lif_multi_step_inference`; every other call
    (training with grad, single step, CUDA, other configurations, :func:`reference_lif`) is
    ``LIFNode``'s own.

    >>> node = FastLIFNode(tau=2.0, v_threshold=1.0, v_reset=0.0, detach_reset=True, step_mode="m")
    >>> with torch.no_grad():
    ...     node(torch.tensor([[1.0], [1.5], [2.0]])).flatten().tolist(), node.v.item()
    ([0.0, 1.0, 1.0], 0.0)
    """

    def _get_name(self) -> str:
        return "LIFNode"

    def multi_step_forward(self, x_seq: torch.Tensor, *args: torch.Tensor, **kwargs: object) -> torch.Tensor:
        reference: torch.Tensor  # LIFNode's own path (spikingjelly is untyped)
        if args or kwargs or not fast_path_applies(self, x_seq):
            reference = super().multi_step_forward(x_seq, *args, **kwargs)
            return reference
        (v,) = self.materialize_states((x_seq,), tuple(self._memories.values()), "m")
        if torch.is_grad_enabled() and v.requires_grad:  # state left by a forward with grad
            reference = super().multi_step_forward(x_seq)
            return reference
        spikes, v_final = lif_multi_step_inference(x_seq, v, self.tau, self.v_threshold)
        self._memories["v"] = v_final
        self.v_seq = None
        return spikes
