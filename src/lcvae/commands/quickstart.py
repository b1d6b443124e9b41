"""lcvae quickstart: train a tiny LC-VAE and a tiny WF-VAE on the built-in clips and compare them."""

from __future__ import annotations

import argparse

NAME = "quickstart"
HELP = "the demo: tiny LC-VAE vs WF-VAE on real clips, same wall time, table + videos (~8 min on 2 CPU cores)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML (configs/quickstart.yaml); defaults are built in")
    p.add_argument("--out", help="output folder (default outputs/quickstart)")
    p.add_argument("--seconds", type=float, help="training seconds per model (default 400)")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.optim.lr=1e-3")


def run(args: argparse.Namespace) -> int:
    import logging

    from lcvae.train.distributed import setup_logging
    from lcvae.train.quickstart import load_quickstart_config, run_quickstart

    extra = [f"out_dir={args.out}"] if args.out else []
    extra += [f"seconds_per_model={args.seconds}"] if args.seconds is not None else []
    cfg = load_quickstart_config(args.config, list(args.overrides) + extra)
    setup_logging(logging.INFO, rank=0)
    result = run_quickstart(cfg)
    print()
    print(result.table)
    print(f"\n{result.seconds:.0f} s in all; videos, loss curves, latent energy and README.txt in {result.out_dir}")
    return 0
