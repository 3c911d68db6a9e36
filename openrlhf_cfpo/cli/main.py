"""``openrlhf-cfpo COMMAND``: one console script, a sub-command per job.

Each sub-command is a module ``openrlhf_cfpo.cli.<name>`` defining ``HELP`` (one line),
``add_arguments(parser)`` and ``run(args, passthrough) -> int``; optional ``PARSER_KWARGS`` and
``PASSTHROUGH = True`` (unparsed arguments go to ``run`` instead of being an error). Sub-command
modules import nothing heavy at top level, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import warnings
from typing import List, Optional

SUBCOMMANDS = ("train", "lab", "eval", "report", "data")
DEPRECATIONS = (DeprecationWarning, PendingDeprecationWarning, FutureWarning)


def quiet_third_party_deprecations() -> None:
    """Hide deprecation warnings raised outside this package (e.g. torch importing pynvml): they
    concern our dependencies' dependencies and say nothing about the run. `--verbose` keeps them."""
    for category in DEPRECATIONS:
        warnings.filterwarnings("ignore", category=category, module=r"(?!openrlhf_cfpo)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="openrlhf-cfpo",
        description="Clipping-Free Policy Optimization for OpenRLHF 0.11.2: train, lab, evaluate, report, data.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMANDS:
        module = importlib.import_module(f"openrlhf_cfpo.cli.{name}")
        sub = commands.add_parser(
            name, help=module.HELP, description=module.__doc__, **getattr(module, "PARSER_KWARGS", {})
        )
        module.add_arguments(sub)
        sub.add_argument("--verbose", action="store_true", help="also show third-party deprecation warnings")
        sub.set_defaults(_module=module)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = build_parser()
    args, passthrough = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    module = args._module
    if not args.verbose:
        quiet_third_party_deprecations()
    if passthrough and not getattr(module, "PASSTHROUGH", False):
        parser.error(f"unrecognized arguments: {' '.join(passthrough)}")
    return module.run(args, passthrough)


if __name__ == "__main__":
    sys.exit(main())
