"""Argument groups shared by several subcommands."""

from __future__ import annotations

import argparse


def add_model_args(p: argparse.ArgumentParser, video_in: bool = True) -> None:
    p.add_argument("--model", required=True, help="checkpoint folder (ours or the official WF-VAE), or a preset with --random-weights")
    p.add_argument("--random-weights", action="store_true", help="allow a preset name (untrained weights: for trying the pipeline)")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"], help="bf16 runs under autocast")
    p.add_argument("--decode-chunk", type=int, help="decode this many latent frames at a time (causal models)")
    p.add_argument("--tile", type=int, help="process frames in spatial tiles of this many pixels")
    p.add_argument("--lossless", action="store_true", help="write lossless H.264 (RGB, QP 0) instead of CRF 18")
    if video_in:
        p.add_argument("--chunk", type=int, help="encode this many frames at a time (a multiple of 4; causal models)")
        p.add_argument("--start", type=int, default=0, help="first frame to read")
        p.add_argument("--frames", type=int, help="number of frames to read (default: all)")
        p.add_argument("--fit", default="error", choices=["error", "crop", "resize"], help="make frames a valid size (default: refuse)")
        p.add_argument("--trim", action="store_true", help="drop trailing frames to the nearest valid count")


def run_options(args: argparse.Namespace):
    from lcvae.inference import RunOptions

    return RunOptions(device=args.device, dtype=args.dtype, chunk=getattr(args, "chunk", None),
                      decode_chunk=args.decode_chunk, tile=args.tile, lossless=args.lossless)
