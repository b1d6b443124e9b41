"""lcvae latent-stats: per-channel mean/std of the diffusion latent over a dataset, into the model's config."""

from __future__ import annotations

import argparse

from lcvae.commands.common import DTYPE_HELP

NAME = "latent-stats"
HELP = "measure the diffusion latent's per-channel mean and std over videos and store them in the model folder"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="a pretrained folder of ours (e.g. written by lcvae export)")
    p.add_argument(
        "data", nargs="?", help="a video folder, or a manifest (.csv/.jsonl); not needed with --kind samples"
    )
    p.add_argument(
        "--kind", choices=["folder", "manifest", "ucf101", "sky", "samples"], help="dataset kind (default: from DATA)"
    )
    p.add_argument("--frames", type=int, help="frames per clip (default: 33 for causal models, 32 otherwise)")
    p.add_argument("--size", type=int, default=256, help="short side resize and centre crop (default 256)")
    p.add_argument("--max-clips", type=int, help="stop after this many clips")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"], help=DTYPE_HELP)
    p.add_argument("--sample", action="store_true", help="posterior samples instead of the mean")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (or progress log lines)")


def run(args: argparse.Namespace) -> int:
    from lcvae.train.latent_stats import latent_stats, stats_data_section

    data = stats_data_section(args.model, args.data, args.kind, args.frames, args.size, args.workers)
    out = latent_stats(
        args.model,
        data,
        max_clips=args.max_clips,
        batch_size=args.batch_size,
        device=args.device,
        sample=args.sample,
        dtype=args.dtype,
        progress=not args.no_progress,
    )
    print(f"{out['clips']} clips: mean {[round(m, 4) for m in out['mean']]}, std {[round(s, 4) for s in out['std']]}")
    return 0
