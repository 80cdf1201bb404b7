"""SViT families hwsearch can build and prune: Spikformer, Spike-driven Transformer, QKFormer.

Importing this package registers every configuration; ``list_models()`` names them and
``create_model(name, **overrides)`` builds one (random weights, official state_dict keys).
``define_config`` / ``ensure_config`` add a user's own configuration of a family (what a study's
``[model_config]`` does); installed packages add families through the ``hwsearch.models`` entry point
(:func:`load_plugins`).
"""

from search_spaces._fastlif import reference_lif
from search_spaces._registry import (
    ENTRY_POINT_GROUP,
    MODELS,
    ModelConfig,
    config_kwargs,
    config_name,
    create_model,
    get_config,
    list_models,
    load_plugins,
    register_config,
)
from search_spaces._user import ConfigError, config_from_dict, define_config, ensure_config

# Importing the family modules registers their configurations.
from search_spaces import qkformer as qkformer  # noqa: E402
from search_spaces import sdt as sdt  # noqa: E402
from search_spaces import spikformer as spikformer  # noqa: E402

__all__ = ["ENTRY_POINT_GROUP", "MODELS", "ConfigError", "ModelConfig", "config_from_dict", "config_kwargs", "config_name", "create_model",
           "define_config", "ensure_config", "get_config", "list_models", "load_plugins", "reference_lif",
           "register_config"]

# Prunable-group declarations (hwsearch.pruning.register_groups).
from search_spaces import _spikformer_groups as _spikformer_groups  # noqa: E402
from search_spaces import _sdt_groups as _sdt_groups  # noqa: E402
from search_spaces import _qkformer_groups as _qkformer_groups  # noqa: E402
from search_spaces import _token_groups as _token_groups  # noqa: E402
