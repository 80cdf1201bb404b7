"""Exact multivariate polynomials over kept widths, compiled once into straight-line Python.

Every analytic cost (parameters, dense MACs, spike elements) of a pruned SViT is a polynomial with
integer coefficients in the kept widths: per-partition counts (q/k channels per head), head counts,
group widths and 0/1 depth indicators. :class:`Poly` holds one; :func:`compile_polys` turns a list of
them into one function (Horner form, shared by scalar and numpy evaluation) so an evaluation is a few
hundred arithmetic operations on Python ints (exact, any size) or int64 columns (a batch of plans).
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["Poly", "compile_polys", "horner", "Evaluator"]

Monomial = tuple[int, ...]  # sorted variable indices, repeated for powers
Number = int | float


class Poly:
    """A polynomial: monomial (sorted tuple of variable indices) -> coefficient.

    Immutable by convention; ``+``, ``-`` and ``*`` with another Poly or a number build new ones.

    >>> x, y = Poly.var(0), Poly.var(1)
    >>> p = 2 * x * y + 3 * x + 1
    >>> p.eval([4, 5])
    53
    """

    __slots__ = ("terms",)

    def __init__(self, terms: Mapping[Monomial, Number] | None = None) -> None:
        self.terms: dict[Monomial, Number] = {m: c for m, c in (terms or {}).items() if c != 0}

    @classmethod
    def var(cls, index: int) -> Poly:
        return cls({(index,): 1})

    @classmethod
    def const(cls, value: Number) -> Poly:
        return cls({(): value})

    @staticmethod
    def lift(other: Poly | Number) -> Poly:
        return other if isinstance(other, Poly) else Poly.const(other)

    def __add__(self, other: Poly | Number) -> Poly:
        out = dict(self.terms)
        for m, c in Poly.lift(other).terms.items():
            out[m] = out.get(m, 0) + c
        return Poly(out)

    __radd__ = __add__

    def __neg__(self) -> Poly:
        return Poly({m: -c for m, c in self.terms.items()})

    def __sub__(self, other: Poly | Number) -> Poly:
        return self + (-Poly.lift(other))

    def __rsub__(self, other: Poly | Number) -> Poly:
        return Poly.lift(other) - self

    def __mul__(self, other: Poly | Number) -> Poly:
        if not isinstance(other, Poly):
            return Poly({m: c * other for m, c in self.terms.items()})
        out: dict[Monomial, Number] = {}
        for m1, c1 in self.terms.items():
            for m2, c2 in other.terms.items():
                m = tuple(sorted(m1 + m2))
                out[m] = out.get(m, 0) + c1 * c2
        return Poly(out)

    __rmul__ = __mul__

    def __bool__(self) -> bool:
        return bool(self.terms)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (int, float)):
            other = Poly.const(other)
        return isinstance(other, Poly) and self.terms == other.terms

    def __hash__(self) -> int:
        return hash(frozenset(self.terms.items()))

    def __repr__(self) -> str:
        return f"Poly({self.terms!r})"

    def variables(self) -> set[int]:
        return {i for m in self.terms for i in m}

    def subs(self, values: Mapping[int, Number]) -> Poly:
        """Substitute numbers for some variables."""
        out: dict[Monomial, Number] = {}
        for m, c in self.terms.items():
            rest = []
            for i in m:
                if i in values:
                    c = c * values[i]
                else:
                    rest.append(i)
            key = tuple(rest)
            out[key] = out.get(key, 0) + c
        return Poly(out)

    def eval(self, values: Sequence[Number]) -> Number:
        """Value at ``values`` (indexed like the variables); exact for integer inputs."""
        total: Number = 0
        for m, c in self.terms.items():
            term: Number = c
            for i in m:
                term *= values[i]
            total += term
        return total


def horner(terms: Mapping[Monomial, Number], names: Sequence[str]) -> str:
    """Python expression for ``terms`` factored greedily by the most frequent variable."""
    if not terms:
        return "0"
    counts: Counter[int] = Counter()
    for m in terms:
        counts.update(set(m))
    if not counts:
        return repr(terms[()])
    var, _ = max(counts.items(), key=lambda kv: (kv[1], -kv[0]))
    with_var: dict[Monomial, Number] = {}
    rest: dict[Monomial, Number] = {}
    for m, c in terms.items():
        if var in m:
            lst = list(m)
            lst.remove(var)
            with_var[tuple(lst)] = c
        else:
            rest[m] = c
    inner = horner(with_var, names)
    if inner == "1":
        head = names[var]
    elif inner.lstrip("-").replace(".", "", 1).isdigit() or inner.isidentifier():
        head = f"{inner}*{names[var]}"
    else:
        head = f"{names[var]}*({inner})"
    return head if not rest else f"{head} + {horner(rest, names)}"


Evaluator = Callable[[Sequence[Any]], tuple[Any, ...]]


def compile_polys(polys: Sequence[Poly], maxima: Sequence[Sequence[Poly]], n_vars: int,
                  *, derived: Mapping[int, Poly] | None = None, vectorized: bool = False) -> Evaluator:
    """One function ``f(values) -> (poly_0, …, poly_k, max_0, …)`` in straight-line Horner form.

    Args:
        polys: polynomials to evaluate.
        maxima: groups of polynomials whose maximum is returned (one value per group; 0 if empty).
        n_vars: number of variables (length of ``values``).
        derived: variable index -> its definition in lower-indexed variables; computed first (the
            entries of ``values`` at these indices are ignored).
        vectorized: values are numpy arrays of equal length (one entry per plan); maxima then use
            ``np.maximum``.
    """
    names = [f"v{i}" for i in range(n_vars)]
    lines = ["def _f(values):"]
    if n_vars:
        lines.append(f"    {', '.join(names)}{',' if n_vars == 1 else ''} = values")
    for i, p in sorted((derived or {}).items()):
        lines.append(f"    {names[i]} = {horner(p.terms, names)}")
    outs = []
    for k, p in enumerate(polys):
        lines.append(f"    o{k} = {horner(p.terms, names)}")
        outs.append(f"o{k}")
    for k, group in enumerate(maxima):
        unique = list(dict.fromkeys(group))
        exprs = [horner(p.terms, names) for p in unique] or ["0"]
        joined = ", ".join(f"({e})" for e in exprs)
        lines.append(f"    m{k} = _max([{joined}])" if len(exprs) > 1 else f"    m{k} = {exprs[0]}")
        outs.append(f"m{k}")
    lines.append(f"    return ({', '.join(outs)}{',' if len(outs) == 1 else ''})")
    namespace: dict[str, Any] = {"_max": (lambda xs: functools.reduce(np.maximum, xs)) if vectorized else max}
    exec(compile("\n".join(lines), "<costmodels.compiled>", "exec"), namespace)  # noqa: S102 - generated code
    fn: Evaluator = namespace["_f"]
    return fn
