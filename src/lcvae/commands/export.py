"""lcvae export: a training checkpoint -> a pretrained folder (EMA weights, config carried over)."""

from __future__ import annotations

import argparse

NAME = "export"
HELP = "turn a train-vae checkpoint (or run folder: its newest) into a pretrained model folder"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="a checkpoints/step_* folder, or a train-vae out_dir")
    p.add_argument("output", help="folder to write (config.json, model.safetensors, export.json)")
    p.add_argument("--weights", default="ema", choices=["ema", "model"], help="EMA weights (default) or the raw generator")


def run(args: argparse.Namespace) -> int:
    from lcvae.train.export import export_checkpoint

    out = export_checkpoint(args.checkpoint, args.output, args.weights)
    print(f"wrote {out} ({args.weights} weights); next: lcvae latent-stats {out} DATA")
    return 0
