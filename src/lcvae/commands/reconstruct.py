"""lcvae reconstruct: encode and decode a video file."""

from __future__ import annotations

import argparse

from lcvae.commands.common import add_model_args, padding_note, run_options

NAME = "reconstruct"
HELP = "encode and decode a video file"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", help="video file")
    p.add_argument("output", help="video file to write (.mp4, .mkv, .mov or .avi)")
    p.add_argument("--side-by-side", action="store_true", help="write input and reconstruction side by side")
    add_model_args(p)


def run(args: argparse.Namespace) -> int:
    from lcvae.data.video import check_output_path
    from lcvae.inference import load_model, reconstruct_file

    check_output_path(args.output)
    model = load_model(args.model, args.device, args.random_weights, args.dtype)
    stats = reconstruct_file(
        model,
        args.input,
        args.output,
        run_options(args),
        args.side_by_side,
        args.start,
        args.frames,
        args.fit,
        args.trim,
        args.pad,
    )
    print(
        f"wrote {args.output}: {stats['frames']} frames {stats['width']}x{stats['height']}, PSNR {stats['psnr']:.2f} dB"
        f"{padding_note(stats['padded'])}"
    )
    return 0
