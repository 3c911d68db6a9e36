"""Run OpenRLHF 0.11.2's PPO driver (openrlhf.cli.train_ppo_ray) with CFPO registered.

Every OpenRLHF argument is accepted as is, parsed by OpenRLHF's own parser, which gains the choice
``--actor.policy_loss_type cfpo`` and the short alias ``--policy_loss``. ``--dry-run`` parses and
validates, prints the resolved arguments as JSON (dotted keys) and exits without starting Ray; it
needs neither vLLM nor flash-attn, so it runs on a login node. ``--check-layouts FOLDER`` checks the
GPU layouts of all the runs a grid recorded there at once (the grids run it before any run starts).
``openrlhf-cfpo train --help`` shows OpenRLHF's full argument list. Every failure before training is
one line naming the fix.
"""

from __future__ import annotations

HELP = "OpenRLHF's PPO driver with --actor.policy_loss_type cfpo (takes every OpenRLHF 0.11.2 argument)"
PARSER_KWARGS = {"add_help": False, "allow_abbrev": False}
PASSTHROUGH = True


def add_arguments(parser) -> None:
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="parse and validate (no GPU stack needed), print the resolved arguments as JSON, do not start Ray",
    )
    parser.add_argument(
        "--check-layouts",
        metavar="FOLDER",
        help="check the GPU layout of every launch line a grid recorded in FOLDER (examples/grid.sh), print one "
        "line per run OpenRLHF cannot place, and exit",
    )


def run(args, passthrough) -> int:
    from openrlhf_cfpo.cli.train_ppo_ray import check_launch_layouts, run_driver

    if args.check_layouts:
        return check_launch_layouts(args.check_layouts)
    return run_driver(passthrough, dry_run=args.dry_run)
