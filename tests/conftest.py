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
