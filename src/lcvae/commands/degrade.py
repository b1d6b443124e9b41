"""lcvae degrade: H.264 re-encoding at constant QP (supplement D.3)."""

from __future__ import annotations

import argparse

NAME = "degrade"
HELP = "re-encode a video with H.264 (libx264) at constant QP, for the data-quality test"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", help="video file")
    p.add_argument("output", help="video file to write (.mp4, .mkv, .mov or .avi)")
    p.add_argument("--qp", type=int, default=30, help="constant quantisation parameter, 0-51 (default: 30)")
    p.add_argument("--start", type=int, default=0, help="first frame to keep")
    p.add_argument("--frames", type=int, help="number of frames to keep (default: all to the end)")


def run(args: argparse.Namespace) -> int:
    from lcvae.data.degrade import degrade_video
    from lcvae.data.video import check_output_path, probe

    check_output_path(args.output)
    if not 0 <= args.qp <= 51:
        raise ValueError(f"--qp must be in [0, 51], got {args.qp}")
    degrade_video(args.input, args.output, qp=args.qp, start=args.start, frames=args.frames)
    info = probe(args.output)
    print(f"wrote {args.output}: {info.frames} frames, {info.duration:.2f} s (libx264, QP {args.qp})")
    return 0
