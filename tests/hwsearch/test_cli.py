"""The command line: demo evaluation, listing, and one-line errors with exit code 2 for bad input."""

from __future__ import annotations

import logging

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from hwsearch.cli import LOGGED_PACKAGES, main
from hwsearch.study import load_study

README = Path(__file__).resolve().parents[2] / "README.md"


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _assert_one_line_error(code: int, err: str, pattern: str) -> None:
    assert code == 2
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    assert re.search(pattern, lines[0]), lines[0]
    assert "Traceback" not in err


def _study(tmp_path: Path, *, model: str = "spikformer-digits-2-64", checkpoint: Path | None = None,
           data: str = '[data]\ndataset = "digits"\n') -> Path:
    ckpt = checkpoint or load_study(Path(__file__).resolve().parents[2] / "studies" / "demo.toml").checkpoint
    f = tmp_path / "study.toml"
    f.write_text(f'model = "{model}"\ncheckpoint = "{ckpt}"\n{data}')
    return f


def test_readme_accuracy_is_what_evaluate_measures(capsys: pytest.CaptureFixture[str], demo_study_path: Path) -> None:
    """The demo checkpoint's test top-1 written in the README is reproduced by `hwsearch evaluate`."""
    code, out, _ = _run(capsys, "evaluate", "--study", str(demo_study_path), "--json")
    assert code == 0
    result = json.loads(out)
    assert result["split"] == "test" and result["samples"] == 360
    m = re.search(r"test top-1 \*\*([0-9.]+) %\*\*", README.read_text())
    assert m, "README must state the demo's test top-1 as 'test top-1 **XX.XX %**'"
    assert f"{result['top1']:.2f}" == m.group(1)
    assert result["top1"] >= 95.0


def test_evaluate_counts_params(capsys: pytest.CaptureFixture[str], demo_study_path: Path) -> None:
    from hwsearch.loading import load_study_model

    code, out, _ = _run(capsys, "evaluate", "--study", str(demo_study_path), "--json", "--limit", "60",
                        "--firing-rates", "--split", "val")
    assert code == 0
    result = json.loads(out)
    model = load_study_model(load_study(demo_study_path)).model
    params = sum(p.numel() for p in model.parameters())
    assert result["params"] == params
    assert result["param_mb"] == pytest.approx(params * 4 / 1e6)
    assert result["samples"] == 60
    rates = result["firing_rates"]
    assert len(rates) == 5 + 7 * 2  # every LIF of the 2-block Spikformer records
    assert all(0.0 < r < 1.0 for r in rates.values())


def test_models_lists_with_params(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "models", "spikformer-8-*")
    assert code == 0
    assert "spikformer-8-384" in out and "16,828,312" in out and "sdt-8-384" not in out


def test_missing_study(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    _assert_one_line_error(*_run(capsys, "evaluate", "--study", str(tmp_path / "x.toml"))[::2], "study file not found")


def test_missing_checkpoint(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    f = _study(tmp_path, checkpoint=tmp_path / "absent.pth")
    _assert_one_line_error(*_run(capsys, "evaluate", "--study", str(f))[::2], "checkpoint not found")


def test_corrupt_checkpoint(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"\x80\x02garbage" * 50)
    f = _study(tmp_path, checkpoint=bad)
    _assert_one_line_error(*_run(capsys, "evaluate", "--study", str(f))[::2], "cannot read checkpoint")


def test_checkpoint_of_the_wrong_family(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from search_spaces import create_model

    torch.manual_seed(0)
    sdt = create_model("sdt-cifar10-2-256")
    torch.save(sdt.state_dict(), tmp_path / "sdt.pth")
    f = _study(tmp_path, checkpoint=tmp_path / "sdt.pth")
    _assert_one_line_error(*_run(capsys, "evaluate", "--study", str(f))[::2],
                           r"does not match 'spikformer-digits-2-64'.*sdt-cifar10-2-256")


def test_unknown_config(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    f = _study(tmp_path, model="spikformer-digits-2-46")
    _assert_one_line_error(*_run(capsys, "evaluate", "--study", str(f))[::2],
                           "unknown model 'spikformer-digits-2-46'; did you mean 'spikformer-digits-2-64'")


def _folder_study(tmp_path: Path, root: Path) -> Path:
    return _study(tmp_path, data=f'[data]\ndataset = "imagefolder"\ntransform = "cifar10"\n'
                                 f'[data.splits]\ntest = "{root}"\nval = "{root}"\n')


def test_image_folder_with_a_non_image_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    (root / "cat").mkdir(parents=True)
    Image.new("RGB", (32, 32), (10, 20, 30)).save(root / "cat" / "a.png")
    (root / "cat" / "notes.txt").write_text("hello")
    _assert_one_line_error(*_run(capsys, "evaluate", "--study", str(_folder_study(tmp_path, root)))[::2], "notes.txt")


def test_empty_image_folder(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    root = tmp_path / "empty"
    root.mkdir()
    _assert_one_line_error(*_run(capsys, "evaluate", "--study", str(_folder_study(tmp_path, root)))[::2], "empty")


def test_bad_flag_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["evaluate", "--nope"])
    assert e.value.code == 2
    assert capsys.readouterr().err.startswith("error: ")


def test_console_script_prints_no_traceback(tmp_path: Path) -> None:
    """The installed `hwsearch` script itself: one line, exit code 2."""
    exe = shutil.which("hwsearch") or str(Path(sys.executable).parent / "hwsearch")
    proc = subprocess.run([exe, "evaluate", "--study", str(tmp_path / "missing.toml")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: study file not found")
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_help_documents_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for command in ("models", "evaluate", "train"):
        assert command in out


@pytest.mark.parametrize(("flags", "level"), [([], logging.WARNING), (["-v"], logging.INFO), (["-vv"], logging.DEBUG)])
def test_verbosity_opens_the_project_loggers(flags: list[str], level: int, capsys: pytest.CaptureFixture[str]) -> None:
    saved = {name: logging.getLogger(name).level for name in LOGGED_PACKAGES}
    try:
        assert main([*flags, "strategies"]) == 0
        for name in LOGGED_PACKAGES:
            assert logging.getLogger(name).getEffectiveLevel() == level
        assert logging.getLogger("matplotlib").getEffectiveLevel() >= logging.WARNING
    finally:
        for name, old in saved.items():
            logging.getLogger(name).setLevel(old)
