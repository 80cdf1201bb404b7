"""The ``hwsearch`` command line: one sub-command per job, every option documented in ``--help``.

Exit codes: 0 done; 1 bug (traceback); 2 usage, spec or input error (one line on stderr);
130 / 143 interrupted by SIGINT / SIGTERM (finished evaluations kept).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from hwsearch import __version__
from hwsearch.errors import UserError

__all__ = ["main", "build_parser"]


class _Parser(argparse.ArgumentParser):
    """argparse with exit code 2 and one-line errors (its default already exits 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    from hwsearch.commands import COMMANDS

    parser = _Parser(
        prog="hwsearch",
        description="Hardware-aware structured-pruning search for Spiking Vision Transformers.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run `hwsearch COMMAND --help` for the options of each command.",
    )
    parser.add_argument("--version", action="version", version=f"hwsearch {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="log to stderr: -v progress details (INFO), -vv everything (DEBUG, Optuna's INFO too)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for command in COMMANDS:
        p = sub.add_parser(command.name, help=command.help, description=command.help)
        command.add_arguments(p)
        p.set_defaults(_run=command.run)
    return parser


#: The packages whose loggers ``-v`` / ``-vv`` open.
LOGGED_PACKAGES = ("hwsearch", "search_spaces", "costmodels")


def configure_logging(verbosity: int) -> None:
    """Log level of the command (``-v`` INFO, ``-vv`` DEBUG) and of Optuna (WARNING unless ``-vv``)."""
    import optuna

    level = logging.DEBUG if verbosity >= 2 else logging.INFO if verbosity == 1 else logging.WARNING
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for package in LOGGED_PACKAGES:  # other libraries stay at WARNING (matplotlib's DEBUG is pages long)
        logging.getLogger(package).setLevel(level)
    optuna.logging.set_verbosity(optuna.logging.INFO if verbosity >= 2 else optuna.logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``hwsearch`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args._argv = list(sys.argv[1:] if argv is None else argv)
    configure_logging(args.verbose)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    from hwsearch import interrupts

    interrupts.install()  # SIGTERM like Ctrl-C: finished work kept, exit 143
    try:
        return int(args._run(args) or 0)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except BrokenPipeError:  # `hwsearch models | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("interrupted (every finished evaluation is in the run's Optuna storage; rerun with --resume to "
              "continue)", file=sys.stderr)
        return interrupts.exit_code()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
