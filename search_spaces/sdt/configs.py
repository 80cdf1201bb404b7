"""The registered Spike-driven Transformer configurations."""

from __future__ import annotations

from search_spaces._registry import ModelConfig, register_config
from search_spaces.sdt.model import SpikeDrivenTransformer

# --------------------------------------------------------------------------------------------------
# Registered configurations (official_params: svit-architectures.md §6, "official code" column)

_IMAGENET = (
    # name, D, L, official_params, README top-1 (T=4)
    ("sdt-8-384", 384, 8, 16_816_536, "72.28"),
    ("sdt-6-512", 512, 6, 23_373_736, "74.11"),
    ("sdt-8-512", 512, 8, 29_689_896, "74.57"),
    ("sdt-10-512", 512, 10, 36_006_056, "74.66"),
    ("sdt-8-768", 768, 8, 66_339_144, "77.07"),
)
_CIFAR = (
    ("sdt-cifar10-2-512", 512, 2, 10_233_546),
    ("sdt-cifar10-2-256", 256, 2, 2_567_082),
)

for _name, _d, _l, _params, _top1 in _IMAGENET:
    register_config(
        ModelConfig(
            name=_name,
            family="sdt",
            layout="imagenet",
            builder=SpikeDrivenTransformer,
            kwargs=dict(
                img_size=224, patch_size=16, in_channels=3, num_classes=1000, embed_dim=_d, num_heads=8,
                mlp_ratio=4, depth=_l, T=4, pooling_stat="1111", spike_mode="lif",
            ),
            official_params=_params,
            arch_names=("sdt",),
            input_shape=(3, 224, 224),
            description=f"Spike-driven Transformer-{_l}-{_d}, ImageNet 224, T=4 (README top-1 {_top1}%)",
        )
    )

for _name, _d, _l, _params in _CIFAR:
    register_config(
        ModelConfig(
            name=_name,
            family="sdt",
            layout="cifar",
            builder=SpikeDrivenTransformer,
            kwargs=dict(
                img_size=32, patch_size=16, in_channels=3, num_classes=10, embed_dim=_d, num_heads=8,
                mlp_ratio=4, depth=_l, T=4, pooling_stat="0011", spike_mode="lif",
            ),
            official_params=_params,
            arch_names=("sdt",),
            input_shape=(3, 32, 32),
            description=f"Spike-driven Transformer-{_l}-{_d}, CIFAR-10 32x32 (pooling 0011), T=4",
        )
    )

del _name, _d, _l, _params, _top1
