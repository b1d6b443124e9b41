"""Subcommands of the ``lcvae`` command, one module each.

A module defines ``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``; ``run``
parses nothing and calls one library function. ``lcvae.cli`` discovers the modules here, so a new
command is a new file.
"""
