"""What a cost model returns: :class:`Cost` (totals) and :class:`LayerCost` (one row per layer).

Conventions (``cost-conventions.md``; every number below follows them, and ``Cost.conventions`` says so):

* ``params``: Σ ``p.numel()`` over ``model.parameters()`` (buffers excluded), dead parameters included
  (Spikformer ``norm1``/``norm2``, DVS ``pos_embed``/``norm``, SDT ``talking_heads``); ``live_params``
  leaves out parameters the forward never uses.
* ``weight_bytes`` = ⌈params × bits(dtype) / 8⌉, dtype one of :data:`DTYPE_BITS` (no quantization
  scales, no BN folding, buffers excluded). MB = 10⁶ bytes.
* ``macs``: dense multiply-accumulates per image (batch 1) over all T steps: conv, linear and attention
  matmuls in the file's order; the SPS conv0 runs on T copies of the image (counted T times); the head
  once per image (Spikformer, QKFormer) or per step (SDT). ``macs_per_step`` = ``macs / T``.
* ``act_elements``: Σ over the LIFs the forward calls of their output elements, all T steps (multi-step
  execution). ``activation_bytes`` = ⌈act_elements × spike_bits / 8⌉ (default 1 bit: bit-packed
  spikes; 8 for bool/uint8, 32 for PyTorch's fp32). ``peak_activation_bytes``: the largest single LIF
  output over all T steps, the same bits per spike: the one tensor any multi-step execution must hold
  at once (a lower bound on the live working set; set by the SPS stem unless it is pruned hard).
* ``sops`` = Σ fr × dense MACs over layers whose input is a binary spike tensor (fr: firing rate of the
  LIF producing it); energy E = e_mac · Σ MACs(non-binary inputs) + e_ac · SOPs per image, an estimate
  with the caveat :data:`ENERGY_CAVEAT`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Cost", "LayerCost", "DTYPE_BITS", "ENERGY_CAVEAT", "E_MAC_PJ", "E_AC_PJ", "MB", "weight_bytes",
           "spike_bytes", "energy_mj"]

SCHEMA = 1
MB = 1_000_000
#: Bits per stored parameter; int4 packs two weights per byte (quantization scales not included).
DTYPE_BITS: dict[str, int] = {"fp32": 32, "fp16": 16, "bf16": 16, "int8": 8, "int4": 4}
#: 45 nm CMOS energies (Horowitz, ISSCC 2014), the constants of the Spikformer/SDT papers.
E_MAC_PJ = 4.6
E_AC_PJ = 0.9
ENERGY_CAVEAT = (
    "estimate: E = E_MAC*MACs(non-binary inputs) + E_AC*SOPs ignores data movement and memory access "
    "(arXiv 2409.08290: with typical neuromorphic memory costs an SNN must stay below ~6.4% (v3) / 5.7% (v4) "
    "average spike rate to beat an equivalent quantized ANN; STEP, arXiv 2505.11151, adds sparsity, "
    "bit-width and memory access)"
)


def weight_bytes(params: int, dtype: str) -> int:
    """⌈params × bits(dtype) / 8⌉; unknown dtypes raise ``ValueError`` naming the valid ones."""
    try:
        bits = DTYPE_BITS[dtype]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {', '.join(DTYPE_BITS)}") from None
    return -(-params * bits // 8)


def spike_bytes(elements: int, spike_bits: int) -> int:
    """⌈elements × spike_bits / 8⌉ (1: bit-packed, 8: bool/uint8, 32: fp32)."""
    return -(-elements * spike_bits // 8)


def energy_mj(nonspike_macs: float, sops: float, *, e_mac_pj: float = E_MAC_PJ, e_ac_pj: float = E_AC_PJ) -> float:
    """E = e_mac·MACs + e_ac·SOPs in millijoules (pJ → mJ: × 10⁻⁹)."""
    return (e_mac_pj * nonspike_macs + e_ac_pj * sops) * 1e-9


@dataclass(frozen=True, slots=True, kw_only=True)
class LayerCost:
    """One row of the per-layer table.

    Attributes:
        name: module path (``block.3.attn.q_conv``; attention matmuls ``block.3.attn.matmul1``/``2`` in
            execution order; LIFs under their own module path).
        kind: ``conv``, ``linear``, ``matmul``, ``norm`` (BN/LN: parameters only), ``lif`` (spikes
            only), ``param`` (a bare parameter such as ``pos_embed``).
        params: parameters of this module alone.
        macs: dense MACs per image over all T steps.
        act_elements: spike elements this row produces over all T steps (``lif`` rows; 0 otherwise).
        input_binary: the input is a binary spike tensor (its MACs are ACs, counted as SOPs).
        input_lif: the LIF whose firing rate is the input rate (None for non-binary inputs).
        firing_rate: ``lif`` rows: the LIF's own rate; binary-input rows: the input rate used; or None.
        sops: fr × macs for binary-input rows once a rate is known, else None.
        live: False for parameters the forward never uses.
    """

    name: str
    kind: str
    params: int = 0
    macs: int = 0
    act_elements: int = 0
    input_binary: bool = False
    input_lif: str | None = None
    firing_rate: float | None = None
    sops: float | None = None
    live: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LayerCost:
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


@dataclass(frozen=True, slots=True, kw_only=True)
class Cost:
    """Costs of one (pruned) model, per image; see the module docstring for every convention.

    Attributes:
        source: ``analytic``, ``measured`` or ``latency``.
        model: registry name of the configuration ('' if unknown).
        params, live_params: all parameters / those the forward uses.
        dtype, weight_bytes: storage dtype and ⌈params × bits / 8⌉.
        macs, attention_macs, nonspike_macs: dense MACs per image over all T steps; the attention-matmul
            part; the part whose input is not a binary spike tensor (energy counts these as MACs).
        T: time steps; ``macs_per_step = macs / T``.
        act_elements, spike_bits, activation_bytes, peak_activation_bytes: spike activations (total over
            all called LIFs, all T steps; peak = largest single LIF output).
        sops: synaptic operations per image (None until firing rates are known).
        energy_mj: energy estimate per image (None without SOPs); always comes with ``energy_caveat``.
        latency_ms, device: measured latency (median) and where it was measured (None if not measured).
        layers: per-layer rows (may be empty when only totals were asked for).
        conventions: the counting conventions behind the numbers, as short labels.
    """

    source: str
    model: str = ""
    params: int
    live_params: int
    dtype: str = "fp32"
    weight_bytes: int
    macs: int
    attention_macs: int = 0
    nonspike_macs: int = 0
    T: int = 1
    act_elements: int = 0
    spike_bits: int = 1
    activation_bytes: int = 0
    peak_activation_bytes: int = 0
    sops: float | None = None
    energy_mj: float | None = None
    energy_caveat: str | None = None
    latency_ms: float | None = None
    device: str | None = None
    layers: tuple[LayerCost, ...] = ()
    conventions: Mapping[str, str] = field(default_factory=dict)
    schema: int = SCHEMA

    @property
    def macs_per_step(self) -> float:
        """Dense MACs per image per time step (head MACs / T where the head runs once per image)."""
        return self.macs / self.T

    @property
    def weight_mb(self) -> float:
        return self.weight_bytes / MB

    @property
    def act_mb(self) -> float:
        return self.activation_bytes / MB

    @property
    def peak_act_mb(self) -> float:
        return self.peak_activation_bytes / MB

    @property
    def gmacs(self) -> float:
        """Dense GMACs per image (all T steps)."""
        return self.macs / 1e9

    def firing_rates(self) -> dict[str, float]:
        """LIF name -> firing rate, from the ``lif`` rows that carry one (feed to the analytic model)."""
        return {r.name: r.firing_rate for r in self.layers if r.kind == "lif" and r.firing_rate is not None}

    def to_dict(self, *, layers: bool = True) -> dict[str, Any]:
        """Plain JSON-able dict (derived values ``weight_mb``, ``act_mb``, … included for readers)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("layers", "conventions")}
        out["conventions"] = dict(self.conventions)
        out.update(macs_per_step=self.macs_per_step, weight_mb=self.weight_mb, act_mb=self.act_mb,
                   peak_act_mb=self.peak_act_mb)
        if layers:
            out["layers"] = [r.to_dict() for r in self.layers]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Cost:
        names = {f.name for f in fields(cls)}
        kw = {k: v for k, v in data.items() if k in names and k not in ("layers", "conventions")}
        return cls(**kw, layers=tuple(LayerCost.from_dict(r) for r in data.get("layers", ())),
                   conventions=dict(data.get("conventions", {})))

    def to_frame(self) -> pd.DataFrame:
        """The per-layer table as a pandas DataFrame (one row per :class:`LayerCost`)."""
        import pandas as pd

        columns = [f.name for f in fields(LayerCost)]
        return pd.DataFrame([r.to_dict() for r in self.layers], columns=columns)

    def summary(self) -> str:
        """One line with the headline numbers and their units."""
        parts = [f"{self.source} {self.model}".strip() + ":", f"params {self.params:,}",
                 f"weights {self.weight_mb:.3f} MB ({self.dtype})", f"MACs {self.gmacs:.4f} G/image",
                 f"spikes {self.act_mb:.3f} MB ({self.spike_bits} bit)"]
        if self.energy_mj is not None:
            parts.append(f"energy {self.energy_mj:.4f} mJ (estimate)")
        if self.latency_ms is not None:
            parts.append(f"latency {self.latency_ms:.2f} ms (measured, {self.device})")
        return ", ".join(parts)


def trusted_constructor(varying: Sequence[str], **constants: Any) -> Callable[..., Cost]:
    """``new(*varying_values) -> Cost`` that skips the dataclass ``__init__`` (hot paths only, ~3x faster).

    The returned function sets the slots directly: the fields named in ``varying`` positionally, in that
    order, every other field to its value in ``constants``. Nothing is validated: values must already be
    what ``Cost(...)`` would hold.
    """
    names = [f.name for f in fields(Cost)]
    if sorted([*varying, *constants]) != sorted(names):
        raise ValueError(f"give every Cost field exactly once: {sorted(set(names) ^ set([*varying, *constants]))}")
    namespace: dict[str, Any] = {"_new": object.__new__, "_Cost": Cost}
    body = ["    obj = _new(_Cost)"]
    for i, name in enumerate(names):
        namespace[f"_set{i}"] = Cost.__dict__[name].__set__
        if name in constants:
            namespace[f"_const{i}"] = constants[name]
        body.append(f"    _set{i}(obj, {name if name in varying else f'_const{i}'})")
    source = f"def new({', '.join(varying)}):\n" + "\n".join(body) + "\n    return obj\n"
    exec(compile(source, "<costmodels.Cost.new>", "exec"), namespace)  # noqa: S102 - generated code
    fn: Callable[..., Cost] = namespace["new"]
    return fn
