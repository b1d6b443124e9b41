"""lcvae degrade: H.264 re-encoding at constant QP (supplement D.3)."""

from __future__ import annotations

import argparse

NAME = "degrade"
HELP = "re-encode a video with H.264 (libx264) at constant QP, for the data-quality test"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--qp", type=int, default=30)


def run(args: argparse.Namespace) -> int:
    from lcvae.data.degrade import degrade_video

    degrade_video(args.input, args.output, qp=args.qp)
    print(f"wrote {args.output} (libx264, QP {args.qp})")
    return 0
