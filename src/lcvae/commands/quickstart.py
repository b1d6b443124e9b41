"""lcvae quickstart: the smallest lcvae study (tiny LC-VAE vs WF-VAE vs PTLC on the built-in clips)."""

from __future__ import annotations

import argparse

NAME = "quickstart"
HELP = (
    "the demo: tiny LC-VAE vs WF-VAE vs PTLC on real clips: evaluates the shipped pretrained models, "
    "fine-tunes each for the same 100 steps with two seeds; table, learning curves, videos and report.html"
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML (configs/quickstart.yaml); defaults are built in")
    p.add_argument("--out", help="output folder (default outputs/quickstart); rerunning into it resumes")
    p.add_argument(
        "--steps",
        type=int,
        help="training steps per model (default 100 from the pretrained models, 300 from scratch; 0: evaluate only)",
    )
    p.add_argument(
        "--pretrained",
        help="folder with one model folder per model (default: the shipped pretrained/quickstart; "
        "e.g. a study's models/)",
    )
    p.add_argument(
        "--from-scratch",
        action="store_true",
        help="train every model from random weights (300 steps) to check the recipe end to end",
    )
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. seeds=[0] train.optim.lr=1e-3")


def run(args: argparse.Namespace) -> int:
    import logging

    from lcvae.commands.common import run_training
    from lcvae.commands.study import print_summary
    from lcvae.train.distributed import setup_logging
    from lcvae.train.quickstart import load_quickstart_config, run_quickstart

    if args.from_scratch and args.pretrained:
        raise ValueError("--from-scratch trains from random weights; it cannot start from --pretrained")
    extra = [f"out_dir={args.out}"] if args.out else []
    extra += [f"steps={args.steps}"] if args.steps is not None else []
    extra += [f"pretrained={args.pretrained}"] if args.pretrained else []
    cfg = load_quickstart_config(args.config, list(args.overrides) + extra, from_scratch=args.from_scratch)
    setup_logging(logging.INFO, rank=0)
    results, code = run_training(NAME, lambda: run_quickstart(cfg))
    if results:
        print_summary(results, cfg.out_dir)
    return code
