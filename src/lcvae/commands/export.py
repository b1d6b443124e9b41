"""lcvae export: a training checkpoint -> a pretrained folder (EMA weights, config carried over), or an
existing model converted between our folder format and diffusers' (AutoencoderKLLCVAE)."""

from __future__ import annotations

import argparse

NAME = "export"
HELP = (
    "a train-vae checkpoint (or run folder: its newest) -> a pretrained folder; or convert a model to diffusers' format"
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "source",
        help="a checkpoints/step_* folder or a train-vae out_dir; or a model to convert: one of our "
        "folders, an AutoencoderKLLCVAE folder, an official WF-VAE, or a preset with --random-weights",
    )
    p.add_argument("output", help="folder to write")
    p.add_argument(
        "--format",
        default="lcvae",
        choices=["lcvae", "diffusers"],
        help="lcvae: config.json + model.safetensors (ours); diffusers: AutoencoderKLLCVAE.save_pretrained "
        "(config.json + diffusion_pytorch_model.safetensors; needs the diffusers extra)",
    )
    p.add_argument(
        "--weights",
        choices=["ema", "model"],
        help="of a training checkpoint: the EMA weights (default) or the raw generator",
    )
    p.add_argument("--random-weights", action="store_true", help="allow a preset name (untrained weights)")


def run(args: argparse.Namespace) -> int:
    from lcvae.train.checkpoint import resolve_checkpoint
    from lcvae.train.export import convert_model, export_checkpoint

    try:
        resolve_checkpoint(args.source)
        is_checkpoint = True
    except FileNotFoundError:
        is_checkpoint = False
    if is_checkpoint:
        weights = args.weights or "ema"
        out = export_checkpoint(args.source, args.output, weights, args.format)
        print(f"wrote {out} ({weights} weights, {args.format} format)")
    else:
        if args.weights is not None:
            raise ValueError(
                f"--weights applies to training checkpoints; {args.source} is not one (a model to convert)"
            )
        out = convert_model(args.source, args.output, args.format, args.random_weights)
        print(f"wrote {out} ({args.format} format) from {args.source}")
    if args.format == "lcvae":
        print(f"next: lcvae latent-stats {out} DATA")
    return 0
