"""lcvae quickstart: the smallest lcvae study (tiny LC-VAE vs WF-VAE vs PTLC on the built-in clips)."""

from __future__ import annotations

import argparse

NAME = "quickstart"
HELP = (
    "the demo: tiny LC-VAE vs WF-VAE vs PTLC on real clips, the same 120 steps and two seeds each; "
    "table, learning curves, videos and report.html (under 10 min on 2 CPU cores)"
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML (configs/quickstart.yaml); defaults are built in")
    p.add_argument("--out", help="output folder (default outputs/quickstart); rerunning into it resumes")
    p.add_argument(
        "--steps", type=int, help="training steps per model (default 120; 0 with --pretrained: evaluate only)"
    )
    p.add_argument(
        "--pretrained",
        help="folder with one model folder per model (e.g. a study's models/): "
        "evaluate (--steps 0) or fine-tune them instead of training from scratch",
    )
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. seeds=[0] train.optim.lr=1e-3")


def run(args: argparse.Namespace) -> int:
    import logging

    from lcvae.commands.study import print_summary
    from lcvae.train.distributed import setup_logging
    from lcvae.train.quickstart import load_quickstart_config, run_quickstart

    extra = [f"out_dir={args.out}"] if args.out else []
    extra += [f"steps={args.steps}"] if args.steps is not None else []
    extra += [f"pretrained={args.pretrained}"] if args.pretrained else []
    cfg = load_quickstart_config(args.config, list(args.overrides) + extra)
    setup_logging(logging.INFO, rank=0)
    results = run_quickstart(cfg)
    if results:
        print_summary(results, cfg.out_dir)
    return 0
