"""SViT families hwsearch can build and prune: Spikformer, Spike-driven Transformer, QKFormer.

Importing this package registers every configuration; ``list_models()`` names them and
``create_model(name, **overrides)`` builds one (random weights, official state_dict keys).
"""

from search_spaces._fastlif import reference_lif
from search_spaces._registry import MODELS, ModelConfig, create_model, get_config, list_models, register_config

# Importing the family modules registers their configurations.
from search_spaces import qkformer as qkformer  # noqa: E402
from search_spaces import sdt as sdt  # noqa: E402
from search_spaces import spikformer as spikformer  # noqa: E402

__all__ = ["MODELS", "ModelConfig", "create_model", "get_config", "list_models", "reference_lif", "register_config"]

# Prunable-group declarations (register into hwsearch.pruning.GROUP_DECLARATIONS).
from search_spaces import _spikformer_groups as _spikformer_groups  # noqa: E402
from search_spaces import _sdt_groups as _sdt_groups  # noqa: E402
from search_spaces import _qkformer_groups as _qkformer_groups  # noqa: E402
