"""lcvae train-latte: train Latte (or the Wan adapter) on a latent cache."""

from __future__ import annotations

import argparse

NAME = "train-latte"
HELP = "train a video diffusion denoiser on a latent cache (configs/latte_*.yaml; resumes its run_dir)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML config (configs/latte_*.yaml)")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. max_steps=1000 model.preset=B")


def run(args: argparse.Namespace) -> int:
    from lcvae.train.train_latte import cli

    return cli(([] if args.config is None else ["--config", args.config]) + list(args.overrides))
