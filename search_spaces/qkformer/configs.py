"""The registered QKFormer configurations."""

from __future__ import annotations

from search_spaces._registry import ModelConfig, register_config
from search_spaces.qkformer.models import QKFormer, QKFormerCIFAR

_IMAGENET_ARCH = ("QKFormer_10_384", "QKFormer_10_512", "QKFormer_10_768", "hierarchical_spiking_transformer")
_CIFAR_ARCH = ("QKFormer", "qkformer", "spiking_transformer")

for _dim, _heads, _params in ((384, 6, 16_473_688), (512, 8, 29_079_336), (768, 12, 64_962_760)):
    register_config(
        ModelConfig(
            name=f"qkformer-10-{_dim}",
            family="qkformer",
            layout="imagenet",
            builder=QKFormer,
            kwargs=dict(
                img_size=224, patch_size=16, in_channels=3, num_classes=1000, embed_dim=_dim,
                num_heads=_heads, mlp_ratio=4, depth=10, T=4,
            ),
            official_params=_params,
            arch_names=_IMAGENET_ARCH,
            input_shape=(3, 224, 224),
            description=f"QKFormer-10-{_dim} ImageNet ({_heads} heads, T=4 as trained; official default T=1)",
        )
    )

for _dataset, _classes, _params in (("cifar10", 10, 6_706_234), ("cifar100", 100, 6_740_884)):
    register_config(
        ModelConfig(
            name=f"qkformer-{_dataset}-4-384",
            family="qkformer",
            layout="cifar",
            builder=QKFormerCIFAR,
            kwargs=dict(
                img_size=32, patch_size=4, in_channels=3, num_classes=_classes, embed_dim=384,
                num_heads=8, mlp_ratio=4, depth=4, T=4,
            ),
            official_params=_params,
            arch_names=_CIFAR_ARCH,
            input_shape=(3, 32, 32),
            description=f"QKFormer-4-384 {_dataset.upper()} (8 heads forced, T=4)",
        )
    )
