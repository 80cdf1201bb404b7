"""One tiny model per registered (family, layout): what the family contract and the fast-path tests build.

A new layout adds its entry here; ``tests/search_spaces/test_family_contract.py`` fails until it has one.
"""

from __future__ import annotations

__all__ = ["SMALL", "TINY_LAYOUTS"]

SMALL = dict(embed_dim=64, num_classes=10, T=2)
#: (family, layout) -> (a registered configuration, overrides making it tiny, input shape)
TINY_LAYOUTS: dict[tuple[str, str], tuple[str, dict[str, object], tuple[int, ...]]] = {
    ("spikformer", "imagenet"): ("spikformer-8-384", dict(SMALL, num_heads=4, depth=2), (2, 3, 64, 64)),
    ("spikformer", "cifar"): ("spikformer-cifar10-4-384", dict(SMALL, num_heads=4, depth=2), (2, 3, 32, 32)),
    ("spikformer", "dvs"): ("spikformer-cifar10dvs-2-256", dict(SMALL, num_heads=4, depth=1), (2, 2, 2, 128, 128)),
    ("sdt", "cifar"): ("sdt-cifar10-2-256", dict(SMALL, num_heads=4, depth=2), (2, 3, 32, 32)),
    ("sdt", "imagenet"): ("sdt-8-384", dict(SMALL, img_size=64, num_heads=4, depth=2), (2, 3, 64, 64)),
    ("qkformer", "imagenet"): ("qkformer-10-384", dict(SMALL, img_size=64, num_heads=4, depth=4), (2, 3, 64, 64)),
    ("qkformer", "cifar"): ("qkformer-cifar10-4-384", dict(SMALL, depth=3), (2, 3, 32, 32)),
}
