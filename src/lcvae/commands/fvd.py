"""lcvae fvd: FVD between two folders of videos (FVD16 by default), printed as JSON."""

from __future__ import annotations

import argparse
import json

NAME = "fvd"
HELP = "FVD between two folders of videos (first N frames of each, resized to 224), as JSON"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("real", help="folder of real videos (searched recursively)")
    p.add_argument("fake", help="folder of generated videos")
    p.add_argument("--frames", type=int, default=16, help="first N frames of each video (FVD16: 16)")
    i3d = p.add_mutually_exclusive_group()
    i3d.add_argument(
        "--i3d",
        help="I3D weights: StyleGAN-V i3d_torchscript.pt or a pytorch-i3d state dict (default: torch's hub cache)",
    )
    i3d.add_argument(
        "--i3d-random", action="store_true", help="random-weight I3D (pipeline test; the number means nothing)"
    )
    p.add_argument("--batch-size", type=int, default=8, help="clips per I3D call")
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    p.add_argument("--device", default="cpu")
    p.add_argument("--output", help="also write the JSON to this file")
    p.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    from lcvae.evaluation import folder_fvd
    from lcvae.utils import write_text

    result = folder_fvd(
        args.real,
        args.fake,
        frames=args.frames,
        i3d=args.i3d,
        i3d_random=args.i3d_random,
        batch_size=args.batch_size,
        num_workers=args.workers,
        device=args.device,
        progress=not args.no_progress,
    )
    text = json.dumps(result, indent=2)
    if args.output:
        write_text(args.output, text + "\n")
    print(text)
    return 0
