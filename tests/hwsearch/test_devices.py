"""--threads and --device: the measured default, device resolution, Ray resources, the CLI, the GPU path."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from hwsearch.cli import main
from hwsearch.devices import Compute, default_threads, resolve_device
from hwsearch.errors import UserError
from hwsearch.search.runners._ray import _actor_resources

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(autouse=True)
def _keep_threads():  # noqa: ANN202 - commands set this process's threads; restore them
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_default_threads_is_the_free_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert default_threads(cpus=2, load=3.6) == 1  # a busy 2-core machine: one thread, not two fighting
    assert default_threads(cpus=2, load=0.9) == 1
    assert default_threads(cpus=4, load=1.4) == 3
    assert default_threads(cpus=16, load=0.2) == 16
    assert 1 <= default_threads() <= torch.get_num_threads() + 1024  # measured on this machine
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert default_threads(cpus=16, load=0.0) == 3  # the user's environment wins over the measurement


def test_resolve_device() -> None:
    assert resolve_device("cpu") == torch.device("cpu") and resolve_device(None) == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(UserError, match=r"unknown --device 'tpu'; use cpu, cuda"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="no CUDA GPU is visible.*use --device cpu"):
            resolve_device("cuda")
    with pytest.raises(UserError, match="--threads must be at least 1"):
        Compute.resolve(threads=0)
    assert Compute.resolve(threads=1).threads == 1 and torch.get_num_threads() == 1


def test_ray_actor_resources_share_the_cluster() -> None:
    assert _actor_resources({"CPU": 8.0}, 2, None, "cpu") == {"num_cpus": 4}
    assert _actor_resources({"CPU": 2.0}, 4, None, "cpu") == {"num_cpus": 1}
    assert _actor_resources({"CPU": 8.0}, 2, 3, "cpu") == {"num_cpus": 3}
    assert _actor_resources({"CPU": 8.0, "GPU": 1.0}, 2, None, "cuda") == {"num_cpus": 4, "num_gpus": 0.5}
    assert _actor_resources({"CPU": 8.0, "GPU": 4.0}, 2, 1, "cuda") == {"num_cpus": 1, "num_gpus": 1.0}
    with pytest.raises(UserError, match="the cluster has no GPU"):
        _actor_resources({"CPU": 8.0}, 2, None, "cuda")


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as e:  # argparse's own errors
        code = int(e.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("command", ["evaluate", "run", "compare", "sensitivity", "train"])
def test_every_model_command_takes_threads_and_device(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "--threads N" in out and "--device cpu|cuda|auto" in out
    code, _, err = _cli(capsys, command, "--device", "tpu")
    assert code == 2 and err.strip() == "error: unknown --device 'tpu'; use cpu, cuda (or cuda:N) or auto"
    code, _, err = _cli(capsys, command, "--threads", "0")
    assert code == 2 and err.count("\n") == 1 and "--threads: expected a whole number >= 1" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="the error is for machines without a GPU")
def test_cuda_without_gpu_is_a_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _cli(capsys, "evaluate", "--device", "cuda", "--limit", "8")
    assert code == 2 and out == "" and err.startswith("error: --device cuda: no CUDA GPU") and err.count("\n") == 1


def test_evaluate_with_threads_and_device(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _cli(capsys, "evaluate", "--limit", "60", "--json", "--threads", "1", "--device", "auto")
    assert code == 0 and torch.get_num_threads() == 1
    plain = _cli(capsys, "evaluate", "--limit", "60", "--json", "--threads", "1")[1]
    if not torch.cuda.is_available():
        assert json.loads(out) == json.loads(plain)


def test_prepare_applies_threads_and_device(quick_study_path, tmp_path) -> None:  # noqa: ANN001
    from hwsearch.search.session import prepare

    setup = prepare(quick_study_path, run_dir=tmp_path, progress=False, threads=1, device="cpu", eval_subset=60)
    assert (setup.spec.threads, setup.spec.device, setup.threads) == (1, "cpu", 1)
    assert torch.get_num_threads() == 1


@needs_cuda
def test_gpu_evaluator_matches_cpu(quick_study_path, tmp_path) -> None:  # noqa: ANN001
    from hwsearch.search.session import prepare
    from hwsearch.search.evaluation import Evaluator
    from hwsearch.search.results import Candidate

    setup = prepare(quick_study_path, run_dir=tmp_path, progress=False, device="cuda", eval_subset=120)
    assert setup.local.device.type == "cuda" and next(setup.local.model.parameters()).device.type == "cpu"
    cpu = Evaluator(replace(setup.spec, device="cpu"))
    plain = Evaluator(replace(setup.spec, prefix_cache_mb=0))
    for levels in ({"block.1.mlp.hidden": 5}, {"block.1.attn.v": 3}, {"patch_embed.c2": 2}):
        c = Candidate(levels=levels)
        gpu, ref, cpu_res = setup.local(c), plain(c), cpu(c)
        assert gpu.status == "ok" and (gpu.accuracy, gpu.samples) == (ref.accuracy, ref.samples)
        assert abs(gpu.accuracy - cpu_res.accuracy) <= 2.0  # cuDNN sums in another order: near, not equal
    assert setup.local.prefix.stats.hits > 0
