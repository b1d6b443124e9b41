"""lcvae analyze: latent frequency analysis (subband energy, lag-1 autocorrelation, Multi-WT leaves)."""

from __future__ import annotations

import argparse

NAME = "analyze"
HELP = "latent frequency analysis of a checkpoint over a dataset: analysis.json and figures"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="checkpoint folder (ours or the official WF-VAE), or a preset with --random-weights")
    p.add_argument(
        "--random-weights", action="store_true", help="allow a preset name (untrained weights: for trying the pipeline)"
    )
    p.add_argument(
        "--data", help="a video file, a folder of videos, a manifest (.csv/.jsonl), or a UCF-101 / Sky Timelapse root"
    )
    p.add_argument("--data-format", default="auto", help="auto, folder, manifest, ucf101, sky or file")
    p.add_argument(
        "--latents",
        nargs="+",
        metavar="FILE",
        help="analyse latents saved by `lcvae encode --raw` instead of --model/--data",
    )
    p.add_argument("--out", required=True, help="output folder for analysis.json and the PNG figures")
    p.add_argument(
        "--frames", type=int, help="frames per clip (default: one Multi-WT group, 32 or 33 for causal models)"
    )
    p.add_argument(
        "--size",
        type=int,
        default=128,
        help="resize the short side and centre-crop to SIZE x SIZE, a multiple of 16 (0: keep, crop to 16)",
    )
    p.add_argument("--start", type=int, default=0, help="first frame of each clip")
    p.add_argument("--stride", type=int, default=1, help="take every STRIDE-th frame")
    p.add_argument("--max-clips", type=int, help="analyse only the first N clips")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    p.add_argument(
        "--dtype",
        default="fp32",
        choices=["fp32", "bf16", "fp16"],
        help="the model's dtype while encoding (statistics are float64 regardless)",
    )
    p.add_argument("--chunk", type=int, help="encode this many frames at a time (causal models)")
    p.add_argument(
        "--no-leaves", action="store_true", help="skip the Multi-WT leaves (then any even latent length works)"
    )
    p.add_argument("--max-channels", type=int, default=16, help="channels shown in the subband image grid")
    p.add_argument("--no-figures", action="store_true", help="write analysis.json only (no matplotlib needed)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from lcvae.analysis_output import analyze_checkpoint, analyze_latent_files

    if args.latents:
        if args.model or args.data:
            raise ValueError("give either --latents or --model with --data, not both")
        data = analyze_latent_files(
            args.latents,
            args.out,
            leaves=not args.no_leaves,
            figures=not args.no_figures,
            max_channels=args.max_channels,
        )
    else:
        if not args.model or not args.data:
            raise ValueError("--model and --data are required (or analyse saved latents with --latents FILE ...)")
        data = analyze_checkpoint(
            args.model,
            args.data,
            args.out,
            data_format=args.data_format,
            frames=args.frames,
            size=args.size or None,
            start_frame=args.start,
            frame_stride=args.stride,
            max_clips=args.max_clips,
            batch_size=args.batch_size,
            device=args.device,
            dtype=args.dtype,
            chunk=args.chunk,
            leaves=not args.no_leaves,
            figures=not args.no_figures,
            max_channels=args.max_channels,
            progress=not args.no_progress,
            random_weights=args.random_weights,
        )
    sub = data["subbands"]
    shares = ", ".join(f"{n} {100 * v:.1f}%" for n, v in zip(sub["names"], sub["energy_share"]))
    print(f"{data['latent']['clips']} clips, {data['latent']['channels']} channels")
    print(f"energy share per subband: {shares} (temporal-low {100 * sub['temporal_low_share']:.1f}%)")
    rho = ", ".join(
        f"{n} {'–' if v is None else f'{v:.2f}'}" for n, v in zip(sub["names"], sub["autocorrelation_channel_mean"])
    )
    print(f"lag-1 autocorrelation (mean over channels): {rho}")
    if data["leaves"]:
        kept = ", ".join(
            f"{k} {'–' if v is None else f'{100 * v:.1f}%'}" for k, v in data["leaves"]["kept_share"].items()
        )
        print(f"energy kept by mask: {kept}")
    print(f"wrote {args.out}/analysis.json and {len(data['figures'])} figures")
    return 0
