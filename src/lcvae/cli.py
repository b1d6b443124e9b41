"""The ``lcvae`` command. Parsing only: each subcommand (a module in ``lcvae.commands``) calls one
library function."""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
from types import ModuleType

import lcvae.commands


def subcommands() -> dict[str, ModuleType]:
    found = {}
    for info in pkgutil.iter_modules(lcvae.commands.__path__):
        module = importlib.import_module(f"lcvae.commands.{info.name}")
        if hasattr(module, "NAME") and hasattr(module, "run"):
            found[module.NAME] = module
    return dict(sorted(found.items()))


def build_parser(commands: dict[str, ModuleType]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lcvae", description="LC-VAE: latent-compressed video VAE")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module in commands.items():
        module.add_arguments(sub.add_parser(name, help=module.HELP, description=module.HELP))
    return parser


def main(argv: list[str] | None = None) -> int:
    commands = subcommands()
    args = build_parser(commands).parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return commands[args.command].run(args)
    except (ValueError, FileNotFoundError) as err:
        print(f"lcvae {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
