"""lcvae sample: videos from a trained denoiser, decoded through the VAE; optional FVD16."""

from __future__ import annotations

import argparse

from lcvae.commands.common import check_output_folder

NAME = "sample"
HELP = "generate videos with a train-latte checkpoint and its VAE (mp4 files + grid.png), optionally FVD16"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--latte", required=True, help="train-latte checkpoint folder, or its run folder (latest checkpoint)"
    )
    p.add_argument("--vae", required=True, help="the VAE folder the denoiser's latent cache was made with")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--n", type=int, default=16, help="number of videos")
    p.add_argument("--seed", type=int, default=0, help="video i depends on (seed, i) only")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument(
        "--guidance", type=float, default=1.0, help="classifier-free guidance scale (class-conditional models)"
    )
    p.add_argument("--steps", type=int, default=250, help="sampling steps (respaced from the 1000 training steps)")
    p.add_argument("--ddim", action="store_true", help="DDIM (eta 0) instead of DDPM")
    p.add_argument("--class-label", type=int, help="class of every video (default: classes in turn)")
    p.add_argument("--no-ema", action="store_true", help="use the raw weights instead of the EMA")
    p.add_argument("--fps", type=float, help="frame rate of the written files (default: the training clips')")
    p.add_argument("--device", default="cpu")
    p.add_argument("--fvd", metavar="REAL_DIR", help="FVD16 against the videos in this folder (as lcvae fvd)")
    p.add_argument("--i3d", help="I3D weights: StyleGAN-V i3d_torchscript.pt or a pytorch-i3d state dict")
    p.add_argument(
        "--i3d-random",
        action="store_true",
        help="use an I3D with RANDOM weights (pipeline check only; the FVD is labelled as such)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar (or progress log lines)")


def run(args: argparse.Namespace) -> int:
    from lcvae.models.io import from_pretrained
    from lcvae.sampling import generate

    if args.fvd and bool(args.i3d) == bool(args.i3d_random):
        raise ValueError("--fvd needs exactly one of --i3d PATH (real weights) or --i3d-random (pipeline check)")
    if not args.fvd and (args.i3d or args.i3d_random):
        raise ValueError("--i3d/--i3d-random only apply with --fvd REAL_DIR")
    check_output_folder(args.out)
    summary = generate(
        args.latte,
        from_pretrained(args.vae),
        args.out,
        n=args.n,
        seed=args.seed,
        batch_size=args.batch,
        guidance=args.guidance,
        steps=args.steps,
        method="ddim" if args.ddim else "ddpm",
        class_label=args.class_label,
        device=args.device,
        use_ema=not args.no_ema,
        fps=args.fps,
        fvd_real=args.fvd,
        i3d=args.i3d,
        i3d_random=args.i3d_random,
        progress=not args.no_progress,
    )
    print(
        f"wrote {summary['n']} videos {summary['video_shape']} to {args.out} "
        f"({summary['seconds_per_video']:.2f} s per video, step {summary['step']})"
    )
    if "fvd" in summary:
        fvd = summary["fvd"]
        note = f" [{fvd['note']}]" if "note" in fvd else ""
        print(
            f"FVD{fvd['frames']} {fvd['fvd']:.2f} ({fvd['real']['used']} real, {fvd['fake']['used']} generated videos, "
            f"{fvd['extractor']}){note}"
        )
    return 0
