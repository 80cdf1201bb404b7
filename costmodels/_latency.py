"""The latency cost model: measured wall-clock time of the (pruned) model, labelled with its device.

MACs and parameters are not latency (``cost-conventions.md`` §7): odd widths break kernel tiling and
small layers are overhead-bound, so a search that cares about speed measures it. The number is the
median of ``repeats`` timed forwards after ``warmup`` untimed ones, neurons reset before each, at a
fixed batch size, in ``torch.no_grad``; the counts next to it come from the analytic model (exact) for
hwsearch-built models, else from the measured model.
"""

from __future__ import annotations

import dataclasses
import platform
import statistics
import time
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn as nn
from spikingjelly.activation_based import functional

from costmodels._analytic import AnalyticCostModel, plan_widths
from costmodels._cost import Cost
from costmodels._measured import MeasuredCostModel, build_pruned, example_input
from costmodels._registry import ParamsMixin, Widths, register_cost_model
from search_spaces import ModelConfig

__all__ = ["LatencyCostModel", "cpu_name", "device_label"]


def cpu_name() -> str:
    """The CPU model from ``/proc/cpuinfo`` (``platform.processor()`` elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_label(device: torch.device, batch_size: int) -> str:
    """E.g. ``cpu: Intel(R) Xeon(R) Processor, 2 threads, torch 2.13.0, fp32, batch 1``."""
    if device.type == "cuda":
        where = f"cuda: {torch.cuda.get_device_name(device)}"
    else:
        where = f"{device.type}: {cpu_name()}, {torch.get_num_threads()} threads"
    return f"{where}, torch {torch.__version__}, fp32, batch {batch_size}"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@register_cost_model("latency")
class LatencyCostModel(ParamsMixin):
    """Measured latency (median of timed forwards), plus exact counts, of a pruned model.

    Args:
        repeats: timed forwards (the median is reported); warmup: untimed forwards before them.
        batch_size: images per forward (latency is per forward, i.e. per batch).
        num_threads: CPU threads during timing (None: torch's current setting).
        device: where to time (``cpu``, ``cuda``…); the model is moved there for the measurement.
        dtype, spike_bits: for the counts reported next to the latency.
        seed: seed of the uniform timing input.
    """

    name = "latency"
    #: What a search asks it for (``Result.costs`` key): timed on the evaluating machine, per candidate.
    provides: tuple[str, ...] = ("latency_ms",)
    needs_forward = True

    def __init__(self, *, repeats: int = 20, warmup: int = 3, batch_size: int = 1, num_threads: int | None = None,
                 device: str = "cpu", dtype: str = "fp32", spike_bits: int = 1, seed: int = 0) -> None:
        self.repeats = repeats
        self.warmup = warmup
        self.batch_size = batch_size
        self.num_threads = num_threads
        self.device = device
        self.dtype = dtype
        self.spike_bits = spike_bits
        self.seed = seed

    def cost(self, config: str | ModelConfig, widths: Widths | None = None, *,
             model_kwargs: Mapping[str, Any] | None = None) -> Cost:
        return self.measure(build_pruned(config, widths, model_kwargs))

    def _counts(self, model: nn.Module) -> Cost:
        config = getattr(model, "hwsearch_config", None)
        if config:
            plan = getattr(model, "hwsearch_plan", None)
            widths = plan_widths(None, plan) if plan is not None else None
            analytic = AnalyticCostModel(dtype=self.dtype, spike_bits=self.spike_bits)
            return analytic.cost(config, widths, model_kwargs=getattr(model, "hwsearch_kwargs", None), per_layer=False)
        return MeasuredCostModel(dtype=self.dtype, spike_bits=self.spike_bits).measure(model)

    @torch.no_grad()
    def time_ms(self, model: nn.Module, inputs: torch.Tensor | None = None) -> tuple[float, str]:
        """(median latency in ms, device label) of ``model`` on ``inputs`` (default: seeded uniform)."""
        device = torch.device(self.device)
        x = (inputs if inputs is not None else example_input(model, self.batch_size, self.seed)).to(device)
        old_threads = torch.get_num_threads()
        if self.num_threads is not None:
            torch.set_num_threads(self.num_threads)
        old_device = next(iter(model.parameters()), torch.empty(0)).device
        model.eval().to(device)
        try:
            times = []
            for i in range(self.warmup + self.repeats):
                functional.reset_net(model)
                _sync(device)
                t0 = time.perf_counter()
                model(x)
                _sync(device)
                if i >= self.warmup:
                    times.append((time.perf_counter() - t0) * 1e3)
            label = device_label(device, x.shape[0])
        finally:
            functional.reset_net(model)
            model.to(old_device)
            torch.set_num_threads(old_threads)
        return statistics.median(times), label

    def measure(self, model: nn.Module, inputs: torch.Tensor | None = None, *, calibration: Any = None) -> Cost:
        """Counts of ``model`` with its measured latency (``source='latency'``).

        ``calibration`` is accepted for the common measuring interface (:class:`~costmodels.CostModel`)
        and not used: latency is timed on ``inputs`` (default: a seeded uniform batch of ``batch_size``).
        """
        latency, label = self.time_ms(model, inputs)
        counts = self._counts(model)
        conventions = {**counts.conventions, "latency": (
            f"measured: median of {self.repeats} forwards after {self.warmup} warm-up, {label}")}
        return dataclasses.replace(counts, source="latency", latency_ms=latency, device=label,
                                   conventions=conventions)
