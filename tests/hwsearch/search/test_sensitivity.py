"""The sensitivity table: candidates, building from results, JSON round-trip, NNI/Distiller shapes, plot."""

from __future__ import annotations

import json
import math

import pytest

from hwsearch.errors import UserError
from hwsearch.search.results import Candidate, Result
from hwsearch.search.profiling import SensitivityMeta, SensitivityTable, sensitivity_candidates
from hwsearch.search.encoding import PlanEncoding, Variable

BASE_ACC = 80.0
BASE_PARAMS = 1_000_000


def _space() -> PlanEncoding:
    # fc1: 10 units, levels at the grid 0.2/0.4/0.6; heads: 4 heads, only 0.25/0.5 realisable.
    fc1 = Variable(name="blocks.0.mlp.hidden", kind="mlp", width=10, levels=(10, 8, 6, 4), rates=(0.0, 0.2, 0.4, 0.6),
                   params=200_000, order=0)
    heads = Variable(name="blocks.0.attn.heads", kind="qk", width=4, levels=(4, 3, 2), rates=(0.0, 0.25, 0.5),
                     params=100_000, order=1)
    return PlanEncoding(model="toy", variables=[fc1, heads], checkpoint_sha256="abc")


def _predict(space: PlanEncoding, levels: dict[str, int]) -> dict[str, float]:
    params = BASE_PARAMS - sum(space[n].params * (space[n].width - space[n].levels[lv]) // space[n].width
                               for n, lv in levels.items())
    return {"params": params, "param_mb": params * 4 / 1e6, "macs_g": params * 196 / 1e9, "act_mb": 1.0}


def _table(space: PlanEncoding, *, fail: str | None = None) -> SensitivityTable:
    drops = {("blocks.0.mlp.hidden", 1): 0.5, ("blocks.0.mlp.hidden", 2): 1.5, ("blocks.0.mlp.hidden", 3): 4.0,
             ("blocks.0.attn.heads", 1): 1.0, ("blocks.0.attn.heads", 2): 3.0}
    results = []
    for c in sensitivity_candidates(space):
        ((name, lv),) = c.levels.items()
        if name == fail and lv == 1:
            results.append(Result(candidate=c, status="failed", error="boom"))
            continue
        results.append(Result(candidate=c, status="ok", accuracy=BASE_ACC - drops[(name, lv)],
                              acc_drop=drops[(name, lv)], costs=_predict(space, c.levels)))
    # a multi-variable result is not part of the table
    multi = Candidate(levels={"blocks.0.mlp.hidden": 1, "blocks.0.attn.heads": 1})
    results.append(Result(candidate=multi, status="ok", accuracy=10.0, acc_drop=70.0, costs=_predict(space, multi.levels)))
    meta = SensitivityMeta(model="toy", checkpoint_sha256="abc", split="val", subset=500, rates=(0.2, 0.4, 0.6))
    return SensitivityTable.from_results(space, results, BASE_ACC, meta, baseline_costs=_predict(space, {}))


def test_candidates_cover_every_variable_and_level_in_order() -> None:
    cands = sensitivity_candidates(_space())
    assert [dict(c.levels) for c in cands] == [
        {"blocks.0.mlp.hidden": 1}, {"blocks.0.mlp.hidden": 2}, {"blocks.0.mlp.hidden": 3},
        {"blocks.0.attn.heads": 1}, {"blocks.0.attn.heads": 2}]
    assert {c.tag for c in cands} == {"profile"}


def test_from_results_reads_accuracy_drop_costs_and_saving() -> None:
    t = _table(_space())
    assert t.accuracy("blocks.0.mlp.hidden", 2) == 78.5
    assert t.drop("blocks.0.mlp.hidden", 2) == 1.5
    assert t.drop("blocks.0.mlp.hidden", 0) == 0.0 and t.accuracy("blocks.0.mlp.hidden", 0) == BASE_ACC
    assert t.drop("unknown", 1) == math.inf and t.accuracy("unknown", 1) is None
    e = t.entry("blocks.0.mlp.hidden", 3)
    assert e is not None and (e.kept, e.rate, e.params) == (4, 0.6, 880_000)
    assert e.mem_saving == pytest.approx(0.12)
    assert len(t.entries) == 5  # the multi-variable result is ignored
    assert t.tolerated_levels("blocks.0.mlp.hidden", 1.5) == [1, 2]


def test_failed_result_reads_as_unknown() -> None:
    t = _table(_space(), fail="blocks.0.attn.heads")
    assert t.accuracy("blocks.0.attn.heads", 1) is None
    assert t.drop("blocks.0.attn.heads", 1) == math.inf
    assert t.tolerated_levels("blocks.0.attn.heads", 5.0) == [2]


def test_json_round_trip_is_atomic_and_exact(tmp_path) -> None:
    t = _table(_space(), fail="blocks.0.attn.heads")
    path = t.save(tmp_path / "cache" / f"{t.key()}.json")
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left behind
    back = SensitivityTable.load(path)
    assert back == t
    assert back.drop("blocks.0.attn.heads", 1) == math.inf
    assert json.loads(path.read_text())["key"] == t.key()


def test_load_rejects_garbage_with_a_user_error(tmp_path) -> None:
    bad = tmp_path / "t.json"
    bad.write_text("{not json")
    with pytest.raises(UserError, match="cannot read sensitivity table"):
        SensitivityTable.load(bad)


def test_matches_and_key_depend_on_every_meta_field() -> None:
    t = _table(_space())
    same = SensitivityMeta(model="toy", checkpoint_sha256="abc", split="val", subset=500, rates=(0.2, 0.4, 0.6))
    assert t.matches(same) and t.key() == same.key()
    for other in (SensitivityMeta(model="toy2", checkpoint_sha256="abc", split="val", subset=500, rates=(0.2, 0.4, 0.6)),
                  SensitivityMeta(model="toy", checkpoint_sha256="abd", split="val", subset=500, rates=(0.2, 0.4, 0.6)),
                  SensitivityMeta(model="toy", checkpoint_sha256="abc", split="test", subset=500, rates=(0.2, 0.4, 0.6)),
                  SensitivityMeta(model="toy", checkpoint_sha256="abc", split="val", subset=None, rates=(0.2, 0.4, 0.6)),
                  SensitivityMeta(model="toy", checkpoint_sha256="abc", split="val", subset=500, rates=(0.2, 0.4))):
        assert not t.matches(other)


def test_wide_frame_has_nni_shape() -> None:
    wide = _table(_space()).to_wide_frame()
    assert wide.index.name == "layername"
    assert list(wide.index) == ["blocks.0.mlp.hidden", "blocks.0.attn.heads"]
    assert list(wide.columns) == [0.2, 0.4, 0.6]
    assert list(wide.loc["blocks.0.mlp.hidden"]) == [79.5, 78.5, 76.0]
    # heads realise 0.25 and 0.5: nominal 0.2 -> 0.25, 0.4 -> 0.5, 0.6 -> 0.5
    assert list(wide.loc["blocks.0.attn.heads"]) == [79.0, 77.0, 77.0]
    assert wide.to_csv().splitlines()[0] == "layername,0.2,0.4,0.6"


def test_long_frame_has_distiller_shape_plus_size_columns() -> None:
    long = _table(_space()).to_long_frame()
    assert list(long.columns[:5]) == ["parameter", "sparsity", "top1", "top5", "loss"]
    assert {"realised_rate", "params", "param_mb", "macs_g", "mem_saving", "acc_drop", "level"} <= set(long.columns)
    assert len(long) == 5
    heads = long[long.parameter == "blocks.0.attn.heads"]
    assert list(heads.sparsity) == [0.2, 0.4] and list(heads.realised_rate) == [0.25, 0.5]
    assert list(heads.top1) == [79.0, 77.0]
    assert long.top5.isna().all()


def test_plot_writes_a_png(tmp_path) -> None:
    path = _table(_space()).plot(tmp_path / "sens.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_meta_may_be_a_mapping_with_driver_names_and_extra_keys(tmp_path) -> None:
    as_dict = {"model": "toy", "checkpoint_sha256": "abc", "eval_split": "val", "eval_samples": 500,
               "rates": [0.2, 0.4, 0.6], "variables": ["blocks.0.mlp.hidden", "blocks.0.attn.heads"], "criterion": "l2"}
    space = _space()
    results = [Result(candidate=c, status="ok", accuracy=79.0, acc_drop=1.0, costs=_predict(space, c.levels))
               for c in sensitivity_candidates(space)]
    t = SensitivityTable.from_results(space, results, BASE_ACC, as_dict)
    assert (t.meta.split, t.meta.subset, t.meta.extra["criterion"]) == ("val", 500, "l2")
    assert t.matches(as_dict) and not t.matches({**as_dict, "criterion": "l1"})
    assert SensitivityTable.load(t.save(tmp_path / "t.json")).matches(as_dict)
    assert t.entry("blocks.0.mlp.hidden", 1).mem_saving is None  # no baseline costs given
