"""lcvae encode: video file -> latent file."""

from __future__ import annotations

import argparse

from lcvae.commands.common import add_model_args, padding_note, run_options

NAME = "encode"
HELP = "video file -> latent file (safetensors)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", help="video file")
    p.add_argument("output", help="latent file to write (.safetensors)")
    p.add_argument("--raw", action="store_true", help="store the backbone latent instead of the diffusion latent")
    add_model_args(p, video_out=False)


def run(args: argparse.Namespace) -> int:
    from lcvae.inference import encode_file, load_model

    if not args.output.endswith(".safetensors"):
        raise ValueError(f"cannot write a latent to {args.output}: latent files are safetensors; name it *.safetensors")
    model = load_model(args.model, args.device, args.random_weights, args.dtype)
    shape, padded = encode_file(
        model,
        args.input,
        args.output,
        run_options(args),
        args.raw,
        args.start,
        args.frames,
        args.fit,
        args.trim,
        args.pad,
    )
    print(
        f"wrote {args.output}: {'raw' if args.raw else 'diffusion'} latent {shape}{padding_note(padded, 'lcvae decode crops back')}"
    )
    return 0
