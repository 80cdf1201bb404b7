"""Bad input, as a user types it: each case runs the ``hwsearch`` console script in its own process and
must give exactly one line ``error: ...`` naming the problem (and a fix), exit code 2, no traceback,
and leave an earlier run directory as it was. A hypothesis fuzz of study files checks that reading a
study raises nothing but a UserError."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
HWSEARCH = str(Path(sys.executable).parent / "hwsearch")
DEMO_CKPT = ROOT / "studies" / "checkpoints" / "spikformer-digits-2-64.pth"
WRONG_FAMILY = ROOT / "tests" / "data" / "official-tiny" / "tiny-qkformer-cifar-3-64.pth"
MARKER = "code-ran.txt"


class _RunsCode:
    """A pickle that would create MARKER when unpickled (weights_only must refuse it)."""

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (open, (MARKER, "w"))


DEMO = """name = "s"
model = "spikformer-digits-2-64"
checkpoint = "{ckpt}"
[data]
dataset = "digits"
eval_split = "val[:120]"
test_split = "test[:60]"
batch_size = 120
[constraints]
param_mb = 0.4
max_acc_drop = 3.0
"""
FOLDER = """name = "f"
model = "spikformer-digits-2-64"
checkpoint = "{ckpt}"
[data]
dataset = "imagefolder"
splits = {{ val = "{folder}" }}
transform = "none"
eval_split = "val"
test_split = "val"
"""


def _images(folder: Path, size: int, extra: str | None = None, empty: bool = False) -> None:
    for c in ("a", "b"):
        (folder / c).mkdir(parents=True, exist_ok=True)
        if not empty:
            Image.fromarray(np.zeros((size, size), dtype=np.uint8)).save(folder / c / "0.png")
    if extra:
        (folder / "a" / extra).write_text("not an image")


def _sandbox(tmp: Path) -> None:
    """Every file the cases below name, relative to ``tmp`` (their working directory)."""
    import torch

    ck = tmp / "ckpt"
    ck.mkdir()
    (ck / "empty.pth").write_bytes(b"")
    (ck / "truncated.pth").write_bytes(DEMO_CKPT.read_bytes()[:4096])
    (ck / "corrupt.pth").write_bytes(os.urandom(2048))
    with open(ck / "evil.pth", "wb") as f:
        pickle.dump({"state_dict": _RunsCode()}, f)
    torch.save([1, 2, 3], ck / "list.pth")
    shutil.copy(WRONG_FAMILY, ck / "qkformer.pth")
    studies = {
        "ok": DEMO.format(ckpt=DEMO_CKPT),
        "missing_ckpt": DEMO.format(ckpt="ckpt/nope.pth"),
        **{f"ckpt_{n}": DEMO.format(ckpt=f"ckpt/{n}.pth") for n in ("empty", "truncated", "corrupt", "evil", "list", "qkformer")},
        "syntax": DEMO.format(ckpt=DEMO_CKPT).replace("param_mb = 0.4", "param_mb = = 0.4"),
        "no_checkpoint": "\n".join(line for line in DEMO.format(ckpt=DEMO_CKPT).splitlines() if not line.startswith("checkpoint")),
        "param_mb_str": DEMO.format(ckpt=DEMO_CKPT).replace("param_mb = 0.4", 'param_mb = "small"'),
        "batch_str": DEMO.format(ckpt=DEMO_CKPT).replace("batch_size = 120", 'batch_size = "big"'),
        "unknown_key": DEMO.format(ckpt=DEMO_CKPT).replace("batch_size = 120", "batchsize = 120"),
        "drop_200": DEMO.format(ckpt=DEMO_CKPT).replace("max_acc_drop = 3.0", "max_acc_drop = 200.0"),
        "unknown_model": DEMO.format(ckpt=DEMO_CKPT).replace("digits-2-64", "digits-2-46"),
        "model_args": DEMO.format(ckpt=DEMO_CKPT) + "[model_args]\ndepth = 1\n",
        "bad_family": DEMO.format(ckpt=DEMO_CKPT).replace('model = "spikformer-digits-2-64"', 'model = "mine"')
        + '[model_config]\nfamily = "spikformr"\n',
        "bad_config": DEMO.format(ckpt=DEMO_CKPT).replace('model = "spikformer-digits-2-64"', 'model = "mine"')
        + '[model_config]\nfamily = "spikformer"\nembed_dim = 60\n',
        "dataset_typo": DEMO.format(ckpt=DEMO_CKPT).replace('dataset = "digits"', 'dataset = "imagefoldr"'),
        "missing_folder": FOLDER.format(ckpt=DEMO_CKPT, folder="nowhere"),
        "transform_typo": FOLDER.format(ckpt=DEMO_CKPT, folder="img_ok").replace('"none"', '"imagenett"'),
        "non_image": FOLDER.format(ckpt=DEMO_CKPT, folder="img_txt"),
        "no_images": FOLDER.format(ckpt=DEMO_CKPT, folder="img_empty"),
        "wrong_size": FOLDER.format(ckpt=DEMO_CKPT, folder="img_big"),
    }
    for name, text in studies.items():
        (tmp / f"{name}.toml").write_text(text)
    _images(tmp / "img_ok", 32)
    _images(tmp / "img_txt", 32, extra="notes.txt")
    _images(tmp / "img_empty", 32, empty=True)
    _images(tmp / "img_big", 64)
    plans = {"malformed": "{not json", "list": "[1, 2]", "schema": '{"schema": "x", "model": "spikformer-digits-2-64", "keep": {}}',
             "unknown_group": json.dumps({"model": "spikformer-digits-2-64", "keep": {"block.0.mlp.hiden": 8}}),
             "zero": json.dumps({"model": "spikformer-digits-2-64", "keep": {"block.0.mlp.hidden": 0}}),
             "too_many": json.dumps({"model": "spikformer-digits-2-64", "keep": {"block.0.mlp.hidden": 999}})}
    for name, text in plans.items():
        (tmp / f"plan_{name}.json").write_text(text)
    (tmp / "sens_list.json").write_text("[1, 2, 3]")
    (tmp / "a_file").write_text("x")
    earlier = tmp / "earlier"
    earlier.mkdir()
    for name in ("trials.csv", "report.md", "optuna.journal", "pareto.csv"):
        (earlier / name).write_text(f"earlier {name}\n")
    (tmp / "fresh").mkdir()
    readonly = tmp / "readonly"
    readonly.mkdir()
    readonly.chmod(0o555)


#: A read-only folder: chmod 555 for a normal user; root writes anywhere but /sys.
READONLY = "readonly" if os.geteuid() != 0 else "/sys/hwsearch-out"

E = ("--out", "earlier")  # bad input must leave the earlier run in this folder untouched
#: Through the console script, one process each: id -> (arguments, a piece of the expected message).
CASES: dict[str, tuple[tuple[str, ...], str]] = {
    # checkpoints
    "ckpt-missing": (("evaluate", "--study", "missing_ckpt.toml"), "checkpoint not found"),
    "ckpt-empty": (("evaluate", "--study", "ckpt_empty.toml"), "cannot read checkpoint"),
    "ckpt-truncated": (("evaluate", "--study", "ckpt_truncated.toml"), "cannot read checkpoint"),
    "ckpt-runs-code": (("evaluate", "--study", "ckpt_evil.toml"), "needs code to unpickle"),
    "ckpt-wrong-family": (("evaluate", "--study", "ckpt_qkformer.toml"), "does not match 'spikformer-digits-2-64'"),
    # unknown names, with close matches
    "model-unknown": (("evaluate", "--study", "unknown_model.toml"), "did you mean 'spikformer-digits-2-64'"),
    "strategy-unknown": (("run", "--study", "ok.toml", "--strategy", "tpee", *E), "did you mean 'tpe'"),
    "criterion-unknown": (("run", "--study", "ok.toml", "--criterion", "l3", *E), "invalid choice: 'l3'"),
    "axis-unknown": (("run", "--study", "ok.toml", "--axes", "mpl", *E), "did you mean 'mlp'"),
    "costmodel-unknown": (("costmodels", "analytc"), "did you mean 'analytic'"),
    # budgets
    "budget-negative": (("run", "--study", "ok.toml", "--budget-mb", "-1", *E), "positive"),
    "budget-nan": (("run", "--study", "ok.toml", "--budget-mb", "nan", *E), "positive finite"),
    "drop-200": (("run", "--study", "ok.toml", "--max-acc-drop", "200", *E), "[0, 100]"),
    "budget-unreachable": (("run", "--study", "ok.toml", "--budget-mb", "0.001", *E), "raise --budget-mb"),
    # rates, counts
    "rates-empty": (("run", "--study", "ok.toml", "--rates", "", *E), "comma-separated rates"),
    "rates-zero": (("run", "--study", "ok.toml", "--rates", "0", *E), "outside (0, 1)"),
    "rates-one": (("run", "--study", "ok.toml", "--rates", "1", *E), "outside (0, 1)"),
    "rates-letters": (("run", "--study", "ok.toml", "--rates", "a,b", *E), "not a number"),
    "trials-zero": (("run", "--study", "ok.toml", "--trials", "0", *E), ">= 1"),
    "workers-absurd": (("run", "--study", "ok.toml", "--workers", "1000", *E), "exceeds the"),
    # cluster, storage, resume, output
    "ray-unreachable": (("run", "--study", "ok.toml", "--ray-address", "127.0.0.1:9", *E), "nothing is listening there"),
    "storage-bogus": (("run", "--study", "ok.toml", "--storage", "bogus", *E), "neither an Optuna URL"),
    "resume-nothing-ran": (("run", "--study", "ok.toml", "--resume", "--out", "fresh"), "nothing ran yet"),
    "out-is-file": (("run", "--study", "ok.toml", "--out", "a_file"), "is a file, not a folder"),
    "out-read-only": (("run", "--study", "ok.toml", "--out", READONLY), "cannot write"),
    # study files
    "study-syntax": (("run", "--study", "syntax.toml", *E), "not valid TOML"),
    "study-no-checkpoint": (("run", "--study", "no_checkpoint.toml", *E), "needs a string `checkpoint`"),
    "study-param-mb-string": (("run", "--study", "param_mb_str.toml", *E), "param_mb in [constraints]"),
    "study-unknown-key": (("run", "--study", "unknown_key.toml", *E), "did you mean 'batch_size'"),
    "study-missing-folder": (("evaluate", "--study", "missing_folder.toml"), "not found"),
    # image folders
    "images-non-image": (("evaluate", "--study", "non_image.toml"), "is not an image"),
    "images-none": (("evaluate", "--study", "no_images.toml"), "holds no images"),
    # plans
    "plan-malformed": (("prune", "--study", "ok.toml", "--plan", "plan_malformed.json", "--out", "p"), "not valid JSON"),
    "plan-unknown-group": (("prune", "--study", "ok.toml", "--plan", "plan_unknown_group.json", "--out", "p"),
                           "did you mean 'block.0.mlp.hidden'"),
    "plan-keeps-zero": (("prune", "--study", "ok.toml", "--plan", "plan_zero.json", "--out", "p"), "block.0.mlp.hidden"),
}
#: More bad inputs through ``hwsearch.cli.main`` in this process (same code path, no process start-up).
MORE: dict[str, tuple[tuple[str, ...], str]] = {
    "ckpt-list": (("evaluate", "--study", "ckpt_list.toml"), "holds a list, not a state_dict"),
    "compare-strategy-unknown": (("compare", "--study", "ok.toml", "--strategies", "prioritized,randm", *E),
                                 "did you mean 'random'"),
    "compare-no-strategy": (("compare", "--study", "ok.toml", "--strategies", ",", *E), "names no strategy"),
    "family-unknown": (("evaluate", "--study", "bad_family.toml"), "did you mean 'spikformer'"),
    "groups-kind-unknown": (("groups", "--study", "ok.toml", "--kind", "mpl"), "did you mean 'mlp'"),
    "budget-huge": (("run", "--study", "ok.toml", "--budget-macs", "1e999", *E), "positive finite"),
    "drop-negative": (("run", "--study", "ok.toml", "--max-acc-drop", "-1", *E), "[0, 100]"),
    "eval-subset-zero": (("run", "--study", "ok.toml", "--eval-subset", "0", *E), ">= 1"),
    "eval-subset-negative": (("run", "--study", "ok.toml", "--eval-subset", "-1", *E), ">= 1"),
    "eval-budget-zero": (("compare", "--study", "ok.toml", "--eval-budget", "0", *E), ">= 1"),
    "evaluate-limit-zero": (("evaluate", "--study", "ok.toml", "--limit", "0"), ">= 1"),
    "evaluate-batch-zero": (("evaluate", "--study", "ok.toml", "--batch-size", "0"), ">= 1"),
    "train-epochs-zero": (("train", "--study", "ok.toml", "--epochs", "0", "--out", "earlier/model.pth"), ">= 1"),
    "train-out-folder": (("train", "--study", "ok.toml", "--out", "earlier"), "is a folder"),
    "cost-sops-negative": (("cost", "--study", "ok.toml", "--sops", "-1"), ">= 0"),
    "ray-malformed": (("run", "--study", "ok.toml", "--ray-address", "nowhere", *E), "HOST:PORT"),
    "storage-sqlite-relative": (("run", "--study", "ok.toml", "--storage", "sqlite://x.db", *E), "three slashes"),
    "prune-out-is-file": (("prune", "--study", "ok.toml", "--plan", "plan_zero.json", "--out", "a_file"), "is a file"),
    "sensitivity-missing": (("run", "--study", "ok.toml", "--sensitivity", "nope.json", *E), "no such file"),
    "sensitivity-list": (("run", "--study", "ok.toml", "--sensitivity", "sens_list.json", *E), "not a sensitivity table"),
    "warm-start-missing": (("run", "--study", "ok.toml", "--warm-start", "fresh", *E), "no trials.csv"),
    "model-dir-missing": (("evaluate", "--study", "ok.toml", "--model-dir", "fresh"), "no architecture.json"),
    "study-missing": (("run", "--study", "nope.toml", *E), "study file not found"),
    "study-batch-size-string": (("evaluate", "--study", "batch_str.toml"), "batch_size in [data]"),
    "study-drop-200": (("run", "--study", "drop_200.toml", *E), "between 0 and 100"),
    "study-model-args": (("evaluate", "--study", "model_args.toml"), "replaced by [model_config]"),
    "study-bad-config": (("evaluate", "--study", "bad_config.toml"), "multiple of 8"),
    "study-dataset-typo": (("evaluate", "--study", "dataset_typo.toml"), "did you mean 'imagefolder'"),
    "study-transform-typo": (("evaluate", "--study", "transform_typo.toml"), "did you mean 'imagenet'"),
    "images-wrong-size": (("evaluate", "--study", "wrong_size.toml"), "1x64x64 but model 'spikformer-digits-2-64' takes 1x32x32"),
    "plan-list": (("prune", "--study", "ok.toml", "--plan", "plan_list.json", "--out", "p"), "not a list"),
    "plan-schema": (("prune", "--study", "ok.toml", "--plan", "plan_schema.json", "--out", "p"), "schema must be a whole number"),
    "plan-missing": (("prune", "--study", "ok.toml", "--plan", "nope.json", "--out", "p"), "plan file not found"),
    "models-unknown": (("models", "spikformr"), "did you mean"),
    "strategies-unknown": (("strategies", "tpee"), "did you mean 'tpe'"),
    "budget-zero": (("run", "--study", "ok.toml", "--budget-mb", "0", *E), "positive"),
    "rates-big": (("run", "--study", "ok.toml", "--rates", "0.5,1.5", *E), "outside (0, 1)"),
    "trials-negative": (("run", "--study", "ok.toml", "--trials", "-3", *E), ">= 1"),
    "ckpt-corrupt": (("evaluate", "--study", "ckpt_corrupt.toml"), "cannot read checkpoint"),
    "plan-keeps-too-many": (("prune", "--study", "ok.toml", "--plan", "plan_too_many.json", "--out", "p"),
                            "block.0.mlp.hidden"),
    "workers-zero": (("run", "--study", "ok.toml", "--workers", "0", *E), ">= 1"),
}


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, subprocess.CompletedProcess[str]], dict]:
    """Run every case (two processes at a time); the sandbox, each result, and the earlier run's digest."""
    tmp = tmp_path_factory.mktemp("robustness")
    _sandbox(tmp)
    before = _digest(tmp / "earlier")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HWSEARCH_CACHE_DIR": str(tmp / "cache")}

    def run(args: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
        return subprocess.run([HWSEARCH, *args], cwd=tmp, env=env, capture_output=True, text=True, timeout=120)

    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {k: pool.submit(run, args) for k, (args, _) in CASES.items()}
        results = {k: f.result() for k, f in futures.items()}
    return tmp, results, before


def test_there_are_at_least_35_distinct_bad_inputs() -> None:
    assert len({args for args, _ in CASES.values()}) == len(CASES) >= 35
    assert not set(CASES) & set(MORE) and len({args for args, _ in MORE.values()}) == len(MORE)


def _check(rc: int, stderr: str, expected: str) -> None:
    lines = stderr.strip().splitlines()
    assert "Traceback" not in stderr, stderr
    assert rc == 2, (rc, stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert expected in lines[0], lines[0]


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_gives_one_clean_line(outcomes, case: str) -> None:  # type: ignore[no-untyped-def]
    _, results, _ = outcomes
    _check(results[case].returncode, results[case].stderr, CASES[case][1])


@pytest.mark.parametrize("case", list(MORE))
def test_more_bad_input_in_process(outcomes, case: str, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from hwsearch.cli import main

    tmp, _, before = outcomes
    monkeypatch.chdir(tmp)
    capsys.readouterr()
    try:
        rc = main(list(MORE[case][0]))
    except SystemExit as e:  # argparse's own errors
        rc = int(e.code or 0)
    _check(rc, capsys.readouterr().err, MORE[case][1])
    assert _digest(tmp / "earlier") == before


def test_earlier_results_are_intact_and_no_code_ran(outcomes) -> None:  # type: ignore[no-untyped-def]
    tmp, _, before = outcomes
    assert _digest(tmp / "earlier") == before
    assert not (tmp / MARKER).exists()
    assert not (tmp / "p").exists()  # a rejected plan writes no pruned model
    assert sorted(p.name for p in (tmp / "fresh").iterdir()) == []


# ----------------------------------------------------------------------------------------- fuzz
_KEYS = {
    None: ["name", "model", "checkpoint", "model_config", "data", "constraints", "train", "search", "modle"],
    "data": ["dataset", "splits", "transform", "resize", "crop", "mean", "std", "img_size", "eval_split",
             "batch_size", "eval_subset", "seed", "interpolation", "bogus"],
    "constraints": ["param_mb", "macs_g", "act_mb", "sops_g", "energy_mj", "latency_ms", "latency_batch",
                    "max_acc_drop", "dtype"],
    "train": ["epochs", "lr", "batch_size", "seed"],
    "search": ["strategy", "prior", "bn_recalibrate", "early_stop", "objective", "cost_models"],
    "model_config": ["family", "layout", "base", "depth", "embed_dim", "num_heads", "mlp_ratio", "T", "img_size", "foo"],
}


def _toml_value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return {float("inf"): "inf", float("-inf"): "-inf"}.get(v, "nan" if v != v else repr(v))
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml_value(x)}" for k, x in v.items()) + " }"
    return str(v)


def test_fuzzed_study_files_never_raise_anything_but_a_user_error(tmp_path: Path) -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from hwsearch.errors import UserError
    from hwsearch.study import load_study

    scalars = st.one_of(st.integers(-5, 300), st.floats(allow_nan=True, allow_infinity=True), st.booleans(),
                        st.sampled_from(["", "x", "spikformer", "digits", "imagefolder", "cifar", "none", "custom",
                                         "val", "val[:3]", "fp16", "spikformer-digits-2-64", str(DEMO_CKPT),
                                         "analytic", "latency", "latncy"]))
    values = st.one_of(scalars, st.lists(scalars, max_size=3), st.dictionaries(st.sampled_from(["val", "train"]), scalars, max_size=2))

    def table(section: str | None):  # type: ignore[no-untyped-def]
        return st.dictionaries(st.sampled_from(_KEYS[section]), values, max_size=5)

    studies = st.fixed_dictionaries({"model": st.sampled_from(["spikformer-digits-2-64", "mine", "x"]),
                                     "checkpoint": st.just(str(DEMO_CKPT))},
                                    optional={"top": table(None), **{s: table(s) for s in _KEYS if s}})

    path = tmp_path / "fuzz.toml"

    @settings(max_examples=150, deadline=None, database=None)
    @given(study=studies)
    def check(study: dict) -> None:  # type: ignore[type-arg]
        lines = [f"{k} = {_toml_value(study[k])}" for k in ("model", "checkpoint")]
        lines += [f"{k} = {_toml_value(v)}" for k, v in study.get("top", {}).items() if k not in ("model", "checkpoint")]
        for section in _KEYS:
            if section and section in study:
                lines.append(f"[{section}]")
                lines += [f"{k} = {_toml_value(v)}" for k, v in study[section].items()]
        path.write_text("\n".join(lines) + "\n")
        try:
            load_study(path)
        except UserError as e:
            assert "\n" not in str(e)

    check()
