"""The scalar fast path: one generated function from a widths mapping straight to the cost totals.

What makes it fast (spikformer-8-768: ~60 groups/indicators, ~200 polynomial terms per total):

* inputs are read with one ``dict.get`` per group and range-checked inline; anything unusual (index
  tuples for channel groups, unknown names, out-of-range values) raises :class:`Fallback` and the caller
  takes the validated slow path, which gives the same numbers or a one-line :class:`PlanError`;
* blocks of identical structure are summed once: every total is a polynomial in the global widths and
  per-block monomials (``alive·W_qk``, ``alive·M``…) with the same coefficients in every block of a
  kind, so each distinct block monomial is summed over the blocks once and shared by all totals;
* the peak spike tensor is the maximum over every LIF, but per-block LIFs are only examined when their
  upper bound (block widths at full size) exceeds the maximum of the global ones (the SPS stem);
* plans that name no depth group run a second specialisation with every block/branch indicator folded
  in as 1 (no per-block ``alive`` products).

Measured on spikformer-8-768 (2-core Xeon, shared): ~6 µs per plan without depth groups, ~9 µs with,
plus ~2 µs to build the :class:`~costmodels.Cost` (``benchmarks/bench_costmodel.py``). Plans that name T
or a token group (the token schedule runs in Python, T multiplies every per-step term) take ~26 µs; plans
that name neither run a specialisation with those variables folded in, as fast as before they existed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from costmodels._poly import Number, Poly, horner
from costmodels._spec import TokenPoint, Variable
from hwsearch.pruning import token_schedule

__all__ = ["Fallback", "compile_fast"]


class Fallback(Exception):
    """The fast path cannot handle these widths; use the validated slow path."""


def _raise_fallback(*_: object) -> None:
    raise Fallback


def _depth(value: Any, units: int) -> list[int]:
    """0/1 indicators of a depth group's kept units (a count keeps the first ones)."""
    if isinstance(value, int):
        if not 0 <= value <= units:
            raise Fallback
        return [1] * value + [0] * (units - value)
    if value and (min(value) < 0 or max(value) >= units):
        raise Fallback
    out = [0] * units
    for u in value:  # a non-integer index raises TypeError: the caller falls back to the validated path
        out[u] = 1
    return out


def _input_lines(variables: Sequence[Variable], names: Sequence[str], fixed: Mapping[int, Number]) -> list[str]:
    lines = ["    if w:", "        if not _known.issuperset(w): _bad()", "        _g = w.get"]
    defaults = ["    else:"]
    seen: set[str] = set()
    for i, v in enumerate(variables):
        if v.kind in ("derived", "schedule") or v.group in seen or i in fixed:
            continue
        seen.add(v.group)
        if v.kind in ("channel", "tokens"):
            lim, p = v.full * v.partitions, v.partitions
            check = f"not 0 < _x <= {lim}" + (f" or _x % {p}" if p > 1 else "")
            lines += [f"        _x = _g({v.group!r}, {lim})", f"        if {check}: _bad()",
                      f"        {names[i]} = _x" + (f" // {p}" if p > 1 else "")]
            defaults.append(f"        {names[i]} = {v.full}")
        else:
            targets = ", ".join(names[i:i + v.units]) + ("," if v.units == 1 else "")
            lines += [f"        _x = _g({v.group!r})", "        if _x is None:",
                      f"            {targets} = {'1, ' * v.units}", "        else:",
                      f"            {targets} = _depth(_x, {v.units})"]
            defaults.append(f"        {targets} = {'1, ' * v.units}")
    return lines + defaults


def _schedule_lines(points: Sequence[TokenPoint], width: int, names: Sequence[str],
                    fixed: Mapping[int, Number]) -> list[str]:
    """Token-flow variables: from ``_sched`` when a token group is named, else the unpruned flow."""
    if not points or all(i in fixed for p in points for i in p.schedule()):
        return []
    targets = ", ".join(names[i] for p in points for i in p.schedule())
    args = ", ".join(f"{names[p.count]}, {1 if p.alive is None else fixed.get(p.alive, 1) if p.alive in fixed else names[p.alive]}"
                     for p in points)
    return ["    if w and not _token_groups.isdisjoint(w):", f"        {targets} = _sched({args})", "    else:",
            f"        {targets} = {', '.join(f'{width}, 0, {width}, 0' for _ in points)}"]


def _sched_function(width: int) -> Callable[..., list[int]]:
    def sched(*args: int) -> list[int]:
        out: list[int] = []
        for f in token_schedule(width, [(args[i], args[i + 1] == 1) for i in range(0, len(args), 2)]):
            out += TokenPoint.values(f)
        return out

    return sched


def _block_sums(polys: Sequence[Poly], variables: Sequence[Variable], names: list[str],
                definitions: Mapping[int, Poly]) -> tuple[list[str], list[Poly]]:
    """Rewrite ``polys`` over global variables and per-kind block sums; returns (sum lines, new polys)."""
    scope_vars: dict[str, list[int]] = {}
    for i, v in enumerate(variables):
        if v.scope is not None:
            scope_vars.setdefault(v.scope, []).append(i)
    canon = {i: j for vs in scope_vars.values() for j, i in enumerate(vs)}
    contrib: dict[str, list[tuple[int, tuple[int, ...], tuple[int, ...], Number]]] = {s: [] for s in scope_vars}
    kept: list[dict[tuple[int, ...], Number]] = [{} for _ in polys]
    for k, p in enumerate(polys):
        for mono, c in p.terms.items():
            scopes = {variables[i].scope for i in mono} - {None}
            if len(scopes) != 1:
                kept[k][mono] = kept[k].get(mono, 0) + c
                continue
            s = scopes.pop()
            glob = tuple(i for i in mono if variables[i].scope is None)
            local = tuple(canon[i] for i in mono if variables[i].scope is not None)
            contrib[s].append((k, glob, local, c))  # type: ignore[index]
    classes: dict[tuple[Any, ...], list[str]] = {}
    for s, vs in scope_vars.items():
        defs = tuple(
            (variables[i].kind, tuple(sorted(
                (tuple(canon.get(j, -1 - j) if variables[j].scope else -1 - j for j in m), c)
                for m, c in definitions[i].terms.items())) if i in definitions else ())
            for i in vs)
        classes.setdefault((defs, tuple(sorted(contrib[s], key=repr))), []).append(s)
    lines: list[str] = []
    for (_, terms), members in classes.items():
        sums: dict[tuple[int, ...], int] = {}
        for k, glob, local, c in terms:
            if local not in sums:
                idx = len(names)
                names.append(f"s{idx}")
                parts = ["*".join(names[scope_vars[s][j]] for j in local) or "1" for s in members]
                lines.append(f"    {names[idx]} = {' + '.join(parts)}")
                sums[local] = idx
            key = tuple(sorted((*glob, sums[local])))
            kept[k][key] = kept[k].get(key, 0) + c
    return lines, [Poly(t) for t in kept]


def _peak_lines(acts: Sequence[Poly], variables: Sequence[Variable], names: Sequence[str],
                definitions: Mapping[int, Poly]) -> list[str]:
    """``peak = max(acts)``, looking at block LIFs only when their full-width bound can win."""
    full: dict[int, Number] = {}
    for i, v in enumerate(variables):
        if v.scope is not None:
            full[i] = definitions[i].subs(full).eval([]) if i in definitions else v.full
    glob = list(dict.fromkeys(a for a in acts if not any(variables[i].scope for i in a.variables())))
    local = list(dict.fromkeys(a for a in acts if a not in glob))
    bounds = list(dict.fromkeys(a.subs(full) for a in local))

    def mx(ps: Sequence[Poly]) -> str:
        exprs = [horner(p.terms, names) for p in ps]
        return exprs[0] if len(exprs) == 1 else f"max({', '.join(exprs)})"

    lines = [f"    peak = {mx(glob) if glob else '0'}"]
    if local:
        lines += [f"    if {mx(bounds)} > peak:", f"        peak = max(peak, {mx(local)})"]
    return lines


def _specialize(variables: Sequence[Variable], fixed: Mapping[int, Number]) -> tuple[dict[int, Number], dict[int, Poly]]:
    """Propagate fixed values through the derived variables: (all fixed values, remaining definitions)."""
    out = dict(fixed)
    definitions: dict[int, Poly] = {}
    for i, v in enumerate(variables):
        if v.definition is not None:
            d = v.definition.subs(out)
            if d.variables():
                definitions[i] = d
            else:
                out[i] = d.eval([])
    return out, definitions


def _function(fname: str, variables: Sequence[Variable], polys: Sequence[Poly], acts: Sequence[Poly],
              fixed: Mapping[int, Number], points: Sequence[TokenPoint] = (), width: int = 0) -> list[str]:
    """Source of ``fname(w)`` with the variables in ``fixed`` (e.g. depth indicators = 1) folded in."""
    fixed, definitions = _specialize(variables, fixed)
    polys = [p.subs(fixed) for p in polys]
    acts = [a for a in (a.subs(fixed) for a in acts) if a]
    names = [f"v{i}" for i in range(len(variables))]
    lines = [f"def {fname}(w):", *_input_lines(variables, names, fixed), *_schedule_lines(points, width, names, fixed)]
    lines += [f"    {names[i]} = {horner(d.terms, names)}" for i, d in sorted(definitions.items())]
    sum_lines, new_polys = _block_sums(polys, variables, names, definitions)
    lines += sum_lines
    outs: list[str] = []
    for k, p in enumerate(new_polys):
        expr = horner(p.terms, names)
        for j in range(k):  # live = params - dead: reuse an earlier total when the difference is small
            diff = p - new_polys[j]
            if len(diff.terms) * 4 < len(p.terms):
                expr = f"o{j} + ({horner(diff.terms, names)})" if diff else f"o{j}"
                break
        lines.append(f"    o{k} = {expr}")
        outs.append(f"o{k}")
    lines += _peak_lines(acts, variables, names, definitions)
    lines.append(f"    return ({', '.join(outs)}, peak)")
    return lines


def compile_fast(variables: Sequence[Variable], polys: Sequence[Poly], acts: Sequence[Poly],
                 points: Sequence[TokenPoint] = (), width: int = 0) -> Callable[[Mapping[str, Any]], tuple[Any, ...]]:
    """``f(widths) -> (*polys, peak)``; raises :class:`Fallback` for anything but plain counts.

    Specialisations: plans that name no depth group (every block and branch kept: the indicators are
    folded in as 1), plans that name neither a depth group nor T nor a token group (the work variables
    folded in too: the common channel-only plan costs what it did before those axes existed), and the
    general one.
    """
    depth = {i: 1 for i, v in enumerate(variables) if v.kind == "depth"}
    work: dict[int, Number] = {i: v.full for i, v in enumerate(variables)
                               if v.kind in ("tokens", "schedule") or (v.group == "T" and v.kind == "channel")}
    lines = _function("_general", variables, polys, acts, {}, points, width)
    if depth:
        lines += _function("_no_depth", variables, polys, acts, depth, points, width)
    if work:
        lines += _function("_plain", variables, polys, acts, {**depth, **work}, points, width)
    plain = "_plain" if work else "_no_depth" if depth else "_general"
    lines += ["def _f(w):", "    if _special.isdisjoint(w):", f"        return {plain}(w)"]
    if depth:
        lines += ["    if _depth_groups.isdisjoint(w):", "        return _no_depth(w)"]
    lines += ["    return _general(w)"]
    namespace: dict[str, Any] = {
        "_known": frozenset(v.group for v in variables if v.kind not in ("derived", "schedule")), "_bad": _raise_fallback,
        "_depth": _depth, "_depth_groups": frozenset(variables[i].group for i in depth),
        "_special": frozenset(variables[i].group for i in [*depth, *work] if variables[i].group),
        "_token_groups": frozenset(variables[p.count].group for p in points), "_sched": _sched_function(width)}
    exec(compile("\n".join(lines), "<costmodels.fastpath>", "exec"), namespace)  # noqa: S102 - generated code
    fn: Callable[[Mapping[str, Any]], tuple[Any, ...]] = namespace["_f"]
    fn.source = "\n".join(lines)  # type: ignore[attr-defined]
    return fn
