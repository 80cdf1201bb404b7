"""Configurations a user defines (study ``[model_config]``) and model families added by plug-in packages."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from costmodels import AnalyticCostModel
from hwsearch.pruning import ChannelGroup, groups_of, prune
from hwsearch.pruning._plan import PruningPlan
from search_spaces import ConfigError, MODELS, define_config, ensure_config

#: One small configuration per family and layout: family, layout, arguments.
FAMILIES = {
    "spikformer-cifar": ("spikformer", "cifar", dict(depth=1, embed_dim=32, num_heads=2, T=2, num_classes=5, in_channels=1)),
    "spikformer-imagenet": ("spikformer", "imagenet", dict(depth=1, embed_dim=32, num_heads=2, T=1, img_size=64, num_classes=4)),
    "sdt-cifar": ("sdt", "cifar", dict(depth=1, embed_dim=32, num_heads=2, T=2, num_classes=3)),
    "qkformer-cifar": ("qkformer", "cifar", dict(depth=2, embed_dim=32, num_heads=2, T=1, num_classes=3)),
}


@pytest.mark.parametrize("key", list(FAMILIES))
def test_user_configuration_builds_prunes_and_costs_exactly(key: str) -> None:
    family, layout, kwargs = FAMILIES[key]
    cfg = ensure_config(define_config(f"user-{key}", family=family, layout=layout, **kwargs))
    assert MODELS.get(cfg.name) is cfg and cfg.user_defined and (cfg.family, cfg.layout) == (family, layout)
    assert all(cfg.kwargs[k] == v for k, v in kwargs.items())
    torch.manual_seed(0)
    model = cfg.build()
    params = sum(p.numel() for p in model.parameters())
    assert AnalyticCostModel().cost(cfg.name).params == params
    group = next(g for g in groups_of(model) if isinstance(g, ChannelGroup) and g.kind == "mlp"
                 and g.width // 2 >= g.min_width * g.partitions)
    small = prune(model, PruningPlan(model=cfg.name, keep={group.name: group.width // 2}))
    assert AnalyticCostModel().cost(cfg.name, {group.name: group.width // 2}).params == sum(
        p.numel() for p in small.parameters()) < params
    x = torch.rand(2, *cfg.input_shape)
    assert small(x).shape == (2, kwargs["num_classes"])


def test_same_definition_registers_once_and_round_trips() -> None:
    cfg = define_config("user-round-trip", family="spikformer", depth=1, embed_dim=16, num_heads=2)
    assert ensure_config(cfg) is ensure_config(cfg.to_dict()) is MODELS.get("user-round-trip")
    assert define_config("x", base="spikformer-digits-2-64", depth=1).kwargs["in_channels"] == 1


@pytest.mark.parametrize(("kwargs", "message"), [
    (dict(family="spikformr"), "did you mean 'spikformer'"),
    (dict(family="spikformer", embeddim=64), "did you mean 'embed_dim'"),
    (dict(family="spikformer", depth="2"), "depth must be a whole number"),
    (dict(family="spikformer", depth=0), "depth must be between 1"),
    (dict(family="spikformer", mlp_ratio=float("nan")), "mlp_ratio must be a number"),
    (dict(family="spikformer", embed_dim=60), "multiple of 8"),
    (dict(family="sdt", layout="dvs"), "has no layout 'dvs'"),
    (dict(base="spikformer-8-384", family="sdt"), "is a spikformer model"),
    (dict(), "needs `family`"),
])
def test_bad_definitions_are_one_line_errors(kwargs: dict, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ConfigError, match=None) as err:
        define_config("bad", **kwargs)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_names_cannot_shadow_or_change() -> None:
    with pytest.raises(ConfigError, match="built-in configuration"):
        ensure_config(define_config("spikformer-8-384", family="spikformer", depth=1))
    ensure_config(define_config("user-fixed", family="spikformer", depth=1, embed_dim=16, num_heads=2))
    with pytest.raises(ConfigError, match=r"defined twice with different arguments \(depth 1 vs 2\)"):
        ensure_config(define_config("user-fixed", family="spikformer", depth=2, embed_dim=16, num_heads=2))


PLUGIN = '''
"""A plug-in family for hwsearch: a Spikformer variant registered through the entry point."""
from costmodels import FAMILY_BUILDERS
from hwsearch.pruning import register_groups
from search_spaces import ModelConfig, register_config
from search_spaces._spikformer_groups import spikformer_groups
from search_spaces.spikformer import SpikformerCIFAR


class TinyFormer(SpikformerCIFAR):
    """The plug-in's model class."""


def register():
    register_config(ModelConfig(
        name="tinyformer-1-32", family="tinyformer", layout="cifar", builder=TinyFormer,
        kwargs=dict(img_size=32, patch_size=4, in_channels=3, num_classes=10, embed_dim=32, num_heads=2,
                    mlp_ratio=4.0, depth=1, T=2),
        input_shape=(3, 32, 32), description="plug-in test family"))
    register_groups("tinyformer", spikformer_groups)
    FAMILY_BUILDERS["tinyformer"] = FAMILY_BUILDERS["spikformer"]
'''


def test_a_plug_in_package_adds_a_family_through_the_entry_point(tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "tinyformer_plugin-0.1.dist-info").mkdir(parents=True)
    (site / "tinyformer_plugin.py").write_text(PLUGIN)
    (site / "tinyformer_plugin-0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: tinyformer-plugin\nVersion: 0.1\n")
    (site / "tinyformer_plugin-0.1.dist-info" / "entry_points.txt").write_text(
        "[hwsearch.models]\ntinyformer = tinyformer_plugin:register\n")
    (tmp_path / "s.toml").write_text(textwrap.dedent("""
        model = "my-tiny"
        checkpoint = "none.pth"
        [model_config]
        family = "tinyformer"
        depth = 2
        num_classes = 3
        """))
    env = {**os.environ, "PYTHONPATH": str(site), "OMP_NUM_THREADS": "1"}
    code = ("from hwsearch.cli import main\n"
            "main(['models', 'tinyformer*'])\n"
            "main(['groups', '--study', 's.toml', '--random-weights', '--kind', 'mlp'])\n"
            "main(['cost', '--study', 's.toml'])\n")
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
    assert "tinyformer-1-32" in res.stdout and "plug-in test family" in res.stdout
    assert "my-tiny: 2 groups" in res.stdout and "block.1.mlp.hidden" in res.stdout  # depth 2 from the study
    assert "my-tiny (MB = 10^6 bytes, T=2)" in res.stdout
