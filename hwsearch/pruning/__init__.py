"""The pruning engine: groups, plans, importance criteria, physical pruning, pruned-model I/O."""

from hwsearch.pruning._engine import GROUP_DECLARATIONS, TOKEN_DECLARATIONS, full_plan, register_groups, groups_of, prune, resolve_plan, topk_units, validate_plan
from hwsearch.pruning._groups import AttrUpdate, ChannelGroup, DepthGroup, Group, Member, TimeGroup, TokenGroup
from hwsearch.pruning._importance import CRITERIA, Importance, create_criterion
from hwsearch.pruning._io import load_pruned, save_pruned
from hwsearch.pruning._plan import PlanError, PruningPlan

__all__ = [
    "AttrUpdate", "CRITERIA", "ChannelGroup", "DepthGroup", "GROUP_DECLARATIONS", "Group", "Importance", "Member",
    "PlanError", "PruningPlan", "create_criterion", "full_plan", "groups_of", "load_pruned", "prune",
    "register_groups", "resolve_plan", "save_pruned", "topk_units", "validate_plan", "TOKEN_DECLARATIONS", "TimeGroup", "TokenGroup",
]
