"""Shared fixtures: paths of the bundled test data and the demo study."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OFFICIAL_TINY = Path(__file__).resolve().parent / "data" / "official-tiny"
DEMO_STUDY = ROOT / "studies" / "demo.toml"


@pytest.fixture(scope="session")
def official_tiny() -> Path:
    return OFFICIAL_TINY


@pytest.fixture(scope="session")
def demo_study_path() -> Path:
    return DEMO_STUDY


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray instance for the whole test session (starting Ray takes seconds)."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory):
    """Profiles are cached in a folder of this test session, never in the user's cache."""
    import os

    old = os.environ.get("HWSEARCH_CACHE_DIR")
    os.environ["HWSEARCH_CACHE_DIR"] = str(tmp_path_factory.mktemp("hwsearch-cache"))
    yield
    if old is None:
        os.environ.pop("HWSEARCH_CACHE_DIR", None)
    else:
        os.environ["HWSEARCH_CACHE_DIR"] = old


@pytest.fixture(scope="session")
def quick_study_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo study with small confirm and test slices (for search tests that re-measure answers)."""
    from hwsearch.study import load_study

    demo = load_study(DEMO_STUDY)
    text = DEMO_STUDY.read_text()
    text = text.replace('checkpoint = "checkpoints/spikformer-digits-2-64.pth"', f'checkpoint = "{demo.checkpoint}"')
    text = text.replace('confirm_split = "val[240:]"', 'confirm_split = "val[240:300]"')
    text = text.replace('test_split = "test"', 'test_split = "test[:60]"')
    assert "val[240:300]" in text and "test[:60]" in text and str(demo.checkpoint) in text
    path = tmp_path_factory.mktemp("quick-study") / "demo-quick.toml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models: intra-op threads only contend on shared CPUs (80x slower); restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
