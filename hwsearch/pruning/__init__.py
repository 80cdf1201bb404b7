"""The pruning engine: plans, importance criteria, physical pruning, pruned-model I/O.

The groups it slices are declared by the families in :mod:`search_spaces.groups` (re-exported here:
``ChannelGroup``, ``register_groups``, ``groups_of``, ...).
"""

from hwsearch.pruning._engine import full_plan, prune, resolve_plan, topk_units, validate_plan
from hwsearch.pruning._importance import CRITERIA, Importance, create_criterion, param_members, unit_slices
from hwsearch.pruning._io import ARCH_FILE, WEIGHTS_FILE, load_pruned, save_pruned
from hwsearch.pruning._plan import PlanError, PruningPlan
from hwsearch.pruning._tokens import (
    SelectionPoint, keep_ratio_loss, learn_token_scores, selection_points, selectors, token_schedule,
)
from search_spaces.groups import (
    GROUP_DECLARATIONS, TOKEN_DECLARATIONS, AttrUpdate, ChannelGroup, DepthGroup, Group, Member, TimeGroup,
    TokenGroup, groups_of, register_groups,
)

__all__ = [
    "AttrUpdate", "CRITERIA", "ChannelGroup", "DepthGroup", "GROUP_DECLARATIONS", "Group", "Importance", "Member",
    "PlanError", "PruningPlan", "create_criterion", "full_plan", "groups_of", "load_pruned", "prune",
    "register_groups", "resolve_plan", "save_pruned", "topk_units", "validate_plan", "TOKEN_DECLARATIONS", "TimeGroup", "TokenGroup",
    # pruned-model folders; criteria's building blocks; token selection (SPViT-style) on a pruned model
    "ARCH_FILE", "WEIGHTS_FILE", "param_members", "unit_slices", "SelectionPoint", "keep_ratio_loss",
    "learn_token_scores", "selection_points", "selectors", "token_schedule",
]
