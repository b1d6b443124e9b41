"""lcvae decode: latent file -> video file."""

from __future__ import annotations

import argparse

from lcvae.commands.common import add_model_args, run_options

NAME = "decode"
HELP = "latent file -> video file"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--fps", type=float, help="output frame rate (default: the source's)")
    add_model_args(p, video_in=False)


def run(args: argparse.Namespace) -> int:
    from lcvae.inference import decode_file, load_model

    model = load_model(args.model, args.device, args.random_weights)
    frames = decode_file(model, args.input, args.output, run_options(args), args.fps)
    print(f"wrote {args.output}: {frames} frames")
    return 0
