"""The ``lcvae`` command. Parsing only: each subcommand (a module in ``lcvae.commands``) calls one
library function.

Errors. A mistake in what the user gave (a ``ValueError``, including config and video errors, or an
``OSError`` such as a missing file) is printed as one line, ``lcvae COMMAND: error: ...``, and the
exit code is 2. Anything else is a bug and keeps its traceback. ``--debug`` (or ``LCVAE_DEBUG=1`` in
the environment) shows the traceback for user errors too.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import pkgutil
import sys
from types import ModuleType

import lcvae.commands

USER_ERRORS = (ValueError, OSError)


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
    parser.add_argument(
        "--debug", action="store_true", help="show the Python traceback for input errors too (also: LCVAE_DEBUG=1)"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module in commands.items():
        module.add_arguments(sub.add_parser(name, help=module.HELP, description=module.HELP))
    return parser


def _debug_env() -> bool:
    return os.environ.get("LCVAE_DEBUG", "").strip().lower() not in ("", "0", "false", "no")


def main(argv: list[str] | None = None) -> int:
    commands = subcommands()
    args = build_parser(commands).parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return commands[args.command].run(args)
    except USER_ERRORS as err:
        if args.debug or _debug_env():
            raise
        message = str(err) or type(err).__name__
        if isinstance(err, OSError) and err.filename is not None and str(err.filename) not in message:
            message = f"{err.filename}: {message}"
        print(f"lcvae {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
