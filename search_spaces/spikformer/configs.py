"""The registered Spikformer configurations (official_params: sum(p.numel()) of the official code,
dead LNs included)."""

from __future__ import annotations

from search_spaces._registry import ModelConfig, register_config
from search_spaces.spikformer.cifar import SpikformerCIFAR
from search_spaces.spikformer.dvs import SpikformerDVS
from search_spaces.spikformer.imagenet import SpikformerImageNet


def _imagenet(depth: int, dim: int, heads: int, params: int, note: str = "") -> None:
    register_config(
        ModelConfig(
            name=f"spikformer-{depth}-{dim}",
            family="spikformer",
            layout="imagenet",
            builder=SpikformerImageNet,
            kwargs=dict(
                img_size=224, patch_size=16, in_channels=3, num_classes=1000, embed_dim=dim,
                num_heads=heads, mlp_ratio=4.0, depth=depth, T=4,
            ),  # fmt: skip
            official_params=params,
            arch_names=("spikformer",),
            input_shape=(3, 224, 224),
            description=f"Spikformer-{depth}-{dim} ImageNet (224px, {heads} heads, T=4){note}",
        )
    )


def _cifar(name: str, depth: int, dim: int, heads: int, classes: int, params: int) -> None:
    register_config(
        ModelConfig(
            name=name,
            family="spikformer",
            layout="cifar",
            builder=SpikformerCIFAR,
            kwargs=dict(
                img_size=32, patch_size=4, in_channels=3, num_classes=classes, embed_dim=dim,
                num_heads=heads, mlp_ratio=4.0, depth=depth, T=4,
            ),  # fmt: skip
            official_params=params,
            arch_names=("spikformer",),
            input_shape=(3, 32, 32),
            description=f"Spikformer-{depth}-{dim} CIFAR{classes} (32px, {heads} heads, T=4)",
        )
    )


_imagenet(8, 384, 12, 16_828_312)
_imagenet(6, 512, 8, 23_385_640)
_imagenet(8, 512, 8, 29_705_768, note="; the official registered default")
_imagenet(10, 512, 8, 36_025_896)
_imagenet(8, 768, 12, 66_363_208)
_cifar("spikformer-cifar10-4-384", 4, 384, 12, 10, 9_330_874)
_cifar("spikformer-cifar100-4-384", 4, 384, 12, 100, 9_365_524)
_cifar("spikformer-cifar10-4-256", 4, 256, 8, 10, 4_159_274)
_cifar("spikformer-cifar10-2-384", 2, 384, 12, 10, 5_768_122)

register_config(
    ModelConfig(
        name="spikformer-cifar10dvs-2-256",
        family="spikformer",
        layout="dvs",
        builder=SpikformerDVS,
        kwargs=dict(
            img_size=128, patch_size=16, in_channels=2, num_classes=10, embed_dim=256,
            num_heads=16, mlp_ratio=4.0, depth=2, T=16,
        ),  # fmt: skip
        official_params=2_585_610,
        arch_names=("spikformer",),
        input_shape=(16, 2, 128, 128),
        description="Spikformer-2-256 CIFAR10-DVS (event frames [T=16,2,128,128], 16 heads)",
    )
)

register_config(
    ModelConfig(
        name="spikformer-digits-2-64",
        family="spikformer",
        layout="cifar",
        builder=SpikformerCIFAR,
        kwargs=dict(
            img_size=32, patch_size=4, in_channels=1, num_classes=10, embed_dim=64,
            num_heads=4, mlp_ratio=4.0, depth=2, T=4,
        ),  # fmt: skip
        official_params=None,
        arch_names=("spikformer",),
        input_shape=(1, 32, 32),
        description="hwsearch demo model: Spikformer-2-64, CIFAR layout, trained on the bundled digits dataset",
    )
)
