"""CLI sub-commands; each module defines one :class:`Command`."""

from __future__ import annotations

from hwsearch.commands._base import Command
from hwsearch.commands.evaluate import EVALUATE
from hwsearch.commands.groups import GROUPS
from hwsearch.commands.models import MODELS_COMMAND
from hwsearch.commands.prune import PRUNE
from hwsearch.commands.run import RUN
from hwsearch.commands.strategies import STRATEGIES_COMMAND
from hwsearch.commands.train import TRAIN

COMMANDS: tuple[Command, ...] = (RUN, MODELS_COMMAND, EVALUATE, TRAIN, GROUPS, PRUNE, STRATEGIES_COMMAND)

__all__ = ["COMMANDS", "Command"]
