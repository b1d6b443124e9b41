"""lcvae train-vae: train LC-VAE (or the WF-VAE baseline) with the paper's recipe; torchrun for DDP."""

from __future__ import annotations

import argparse

NAME = "train-vae"
HELP = "train an LC-VAE / WF-VAE (configs/train_*.yaml); resumes from its out_dir; run under torchrun for DDP"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML config (configs/train_*.yaml); fields not set keep the paper's defaults")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. optim.lr=2e-5 train.out_dir=runs/chn8")


def run(args: argparse.Namespace) -> int:
    from lcvae.commands.common import run_training
    from lcvae.train.train_vae import run_cli

    result, code = run_training(NAME, lambda: run_cli(args.config, args.overrides))
    if result is not None and result.checkpoint is not None:
        print(f"step {result.step} ({result.stopped_by}); last checkpoint {result.checkpoint}")
    return code
