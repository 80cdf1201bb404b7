"""Study specs: parsing, path resolution, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from hwsearch.errors import StudyError
from hwsearch.study import default_study_path, load_study


def test_demo_study_parses(demo_study_path: Path) -> None:
    study = load_study(demo_study_path)
    assert study.name == "demo"
    assert study.model == "spikformer-digits-2-64"
    assert study.checkpoint == demo_study_path.parent / "checkpoints" / "spikformer-digits-2-64.pth"
    assert study.data.dataset == "digits" and study.data.eval_split == "val[:240]" and study.data.test_split == "test"
    assert study.data.confirm_split == "val[240:]"
    assert study.constraints.max_acc_drop == 3.0
    assert default_study_path() == demo_study_path


def test_imagenet_example_without_paths_fails_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IMAGENET_DIR", raising=False)
    monkeypatch.delenv("IMAGENET_CKPT_DIR", raising=False)
    path = Path(__file__).resolve().parents[2] / "studies" / "spikformer-8-384-imagenet.toml"
    with pytest.raises(StudyError) as e:
        load_study(path)
    assert "IMAGENET" in str(e.value) and "\n" not in str(e.value)


def test_imagenet_example_with_absent_folders_names_the_split(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMAGENET_DIR", str(tmp_path / "imagenet"))
    monkeypatch.setenv("IMAGENET_CKPT_DIR", str(tmp_path))
    path = Path(__file__).resolve().parents[2] / "studies" / "spikformer-8-384-imagenet.toml"
    with pytest.raises(StudyError, match=r"data split 'val' not found: .*imagenet/val"):
        load_study(path)


def test_relative_paths_resolve_against_the_study_file(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    f = tmp_path / "sub" / "s.toml"
    f.write_text('model = "spikformer-digits-2-64"\ncheckpoint = "../c.pth"\n')
    assert load_study(f).checkpoint == tmp_path / "c.pth"


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ('model = "m"\ncheckpoint = "c"\nfoo = 1\n', "unknown key 'foo'"),
        ('model = "m"\ncheckpoint = "c"\n[data]\ndatset = "digits"\n', r"unknown key 'datset' in \[data\]"),
        ('model = "m"\n', "needs a string `checkpoint`"),
        ('model = "m"\ncheckpoint = "c"\n[constraints]\ndtype = "fp8"\n', "unknown dtype 'fp8'"),
        ("model = \n", "not valid TOML"),
        ('model = "m"\ncheckpoint = "c"\n[search]\ncost_models = ["latncy"]\n',
         r"unknown cost model 'latncy'; did you mean 'latency'\?.*cost_models of \[search\]"),
        ('model = "m"\ncheckpoint = "c"\n[search]\ncost_models = "latency"\n', "must be a list of names"),
        ('model = "m"\ncheckpoint = "c"\n[constraints]\nsops_g = -1\n', "sops_g in .* must be positive"),
        ('model = "m"\ncheckpoint = "c"\n[constraints]\nlatency_batch = 0\n', "latency_batch in .* must be positive"),
        ('model = "m"\ncheckpoint = "c"\n[constraints]\nlatency_ms = "fast"\n', "latency_ms in .* must be a number"),
        ('model = "m"\ncheckpoint = "c"\n[constraints]\nsops = 1\n', "unknown key 'sops'.*did you mean 'sops_g'"),
    ],
)
def test_bad_study_files(tmp_path: Path, text: str, pattern: str) -> None:
    f = tmp_path / "s.toml"
    f.write_text(text)
    with pytest.raises(StudyError, match=pattern) as e:
        load_study(f)
    assert "\n" not in str(e.value)


def test_missing_study_file(tmp_path: Path) -> None:
    with pytest.raises(StudyError, match="study file not found"):
        load_study(tmp_path / "none.toml")
