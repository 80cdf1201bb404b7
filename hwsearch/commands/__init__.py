"""CLI sub-commands; each module defines one :class:`Command`."""

from __future__ import annotations

from hwsearch.commands._base import Command
from hwsearch.commands.costmodels import COSTMODELS_COMMAND
from hwsearch.commands.compare import COMPARE
from hwsearch.commands.cost import COST
from hwsearch.commands.criteria import CRITERIA_COMMAND
from hwsearch.commands.evaluate import EVALUATE
from hwsearch.commands.finetune import FINETUNE
from hwsearch.commands.groups import GROUPS
from hwsearch.commands.models import MODELS_COMMAND
from hwsearch.commands.prune import PRUNE
from hwsearch.commands.run import RUN
from hwsearch.commands.sensitivity import SENSITIVITY
from hwsearch.commands.strategies import STRATEGIES_COMMAND
from hwsearch.commands.train import TRAIN

COMMANDS: tuple[Command, ...] = (RUN, COMPARE, SENSITIVITY, MODELS_COMMAND, EVALUATE, TRAIN, FINETUNE, GROUPS, PRUNE, COST, STRATEGIES_COMMAND, COSTMODELS_COMMAND, CRITERIA_COMMAND)

__all__ = ["COMMANDS", "Command"]
