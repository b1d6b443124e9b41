"""Argument groups shared by several subcommands."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

DTYPE_HELP = (
    "model precision: the weights are cast to it and run in it, no autocast (fp32 default; bf16 "
    "halves memory and on most hardware time, its output >= 40 dB PSNR against fp32's; fp16 is for GPUs)"
)


def add_model_args(p: argparse.ArgumentParser, video_in: bool = True, video_out: bool = True) -> None:
    """Model, device and precision options of the file commands; ``video_in``: the reading options
    (frames, fit, trim, pad), ``video_out``: the decoding and video-writing options."""
    p.add_argument(
        "--model",
        required=True,
        help="checkpoint folder (ours or the official WF-VAE), or a preset with --random-weights",
    )
    p.add_argument(
        "--random-weights", action="store_true", help="allow a preset name (untrained weights: for trying the pipeline)"
    )
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"], help=DTYPE_HELP)
    p.add_argument("--tile", type=int, help="process frames in spatial tiles of this many pixels")
    if video_out:
        p.add_argument("--decode-chunk", type=int, help="decode this many latent frames at a time (causal models)")
        p.add_argument("--lossless", action="store_true", help="write lossless H.264 (RGB, QP 0) instead of CRF 18")
    if video_in:
        p.add_argument("--chunk", type=int, help="encode this many frames at a time (a multiple of 4; causal models)")
        p.add_argument("--start", type=int, default=0, help="first frame to read")
        p.add_argument("--frames", type=int, help="number of frames to read (default: all)")
        p.add_argument(
            "--fit",
            default="error",
            choices=["error", "crop", "resize"],
            help="make frames a valid size (default: refuse)",
        )
        p.add_argument("--trim", action="store_true", help="drop trailing frames to the nearest valid count")
        back = "crop the output back" if video_out else "record the input's size so that decode crops back"
        p.add_argument(
            "--pad",
            action="store_true",
            help=f"pad to the next valid frame count and size by repeating the last frame and the edge "
            f"pixels, and {back} (reported)",
        )
    p.add_argument("--no-progress", action="store_true", help="no progress bar (or progress log lines)")


def run_options(args: argparse.Namespace):
    from lcvae.inference import RunOptions

    return RunOptions(
        device=args.device,
        dtype=args.dtype,
        chunk=getattr(args, "chunk", None),
        decode_chunk=getattr(args, "decode_chunk", None),
        tile=args.tile,
        lossless=getattr(args, "lossless", False),
        progress=not args.no_progress,
    )


def padding_note(padded: dict[str, int], then: str = "cropped back") -> str:
    """ "" or "; padded by N frames and H rows x W columns (edge replication), <then>" for a
    command's summary line; ``padded``: the amounts from ``lcvae.inference`` ({"frames", "height", "width"})."""
    if not any(padded.values()):
        return ""
    return (
        f"; padded by {padded['frames']} frames and {padded['height']} rows x {padded['width']} columns "
        f"(edge replication), {then}"
    )


def check_output_folder(path: str) -> None:
    """Refuse, before any compute, an output folder path that names an existing file (commands
    that write fixed-name videos such as video_00000.mp4 and clip00000.mp4 into it)."""
    from pathlib import Path

    if Path(path).exists() and not Path(path).is_dir():
        raise ValueError(f"{path} is a file; --out takes a folder (created if missing) for the videos and reports")


def report_nothing_done(done: int, skipped: list[tuple[str, str]], what: str) -> int:
    """A dataset command's exit status: 0 when ``done`` > 0, else 1 after printing each skipped
    input (path, reason) to stderr, so scripts and CI see that nothing was processed."""
    if done:
        return 0
    import sys

    print(f"error: no {what}: every input was skipped ({len(skipped)})", file=sys.stderr)
    for path, reason in skipped:
        print(f"  {path}: {reason}", file=sys.stderr)
    return 1


def add_eval_options(p: argparse.ArgumentParser, samples: int) -> None:
    """How an evaluation runs and what it scores (``lcvae eval`` and the ablations that evaluate);
    ``samples``: the default number of clips written side by side."""
    p.add_argument("--max-clips", type=int, help="evaluate only the first N clips")
    p.add_argument(
        "--protocol",
        default="standard",
        choices=["standard", "reference"],
        help="standard: [-1, 1], posterior mode, fp32, dataset-level rFVD; reference: the authors' quirks (docs/evaluation.md)",
    )
    p.add_argument(
        "--lpips",
        default="alex",
        help="alex or vgg (LPIPS: needs --lpips-backbone), st-alex or st-vgg (ST-LPIPS: weights ship with stlpips-pytorch), or none",
    )
    p.add_argument("--lpips-backbone", help="torchvision ImageNet AlexNet/VGG16 weights for LPIPS")
    i3d = p.add_mutually_exclusive_group()
    i3d.add_argument("--i3d", help="I3D weights: StyleGAN-V i3d_torchscript.pt or a pytorch-i3d state dict")
    i3d.add_argument(
        "--i3d-random", action="store_true", help="random-weight I3D (pipeline test; the rFVD means nothing)"
    )
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (one GPU per rank under torchrun)")
    p.add_argument("--chunk", type=int, help="encode this many frames at a time (causal models)")
    p.add_argument("--decode-chunk", type=int, help="decode this many latent frames at a time (causal models)")
    p.add_argument("--tile", type=int, help="process frames in spatial tiles of this many pixels")
    p.add_argument("--samples", type=int, default=samples, help="write the first N clips side by side (mp4 + png grid)")
    p.add_argument("--seed", type=int, default=0, help="posterior samples of the reference protocol")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def eval_options(args: argparse.Namespace, **extra: Any):
    """The ``EvalOptions`` of :func:`add_eval_options`' arguments (``extra``: a command's own fields)."""
    from lcvae.evaluation import EvalOptions

    return EvalOptions(
        protocol=args.protocol,
        batch_size=args.batch_size,
        num_workers=args.workers,
        device=args.device,
        chunk=args.chunk,
        decode_chunk=args.decode_chunk,
        tile=args.tile,
        lpips=args.lpips,
        lpips_backbone=args.lpips_backbone,
        i3d=args.i3d,
        i3d_random=args.i3d_random,
        max_clips=args.max_clips,
        samples=args.samples,
        seed=args.seed,
        progress=not args.no_progress,
        **extra,
    )


def run_training(command: str, train: Callable[[], T]) -> tuple[T | None, int]:
    """Run a training command's work; a divergence or a SIGTERM / SIGINT stop (a checkpoint was
    written either way) becomes one line and the trainer's exit code instead of a traceback.
    Returns (result, 0), or (None, exit code) when it stopped."""
    from lcvae.train.faults import EXIT_DIVERGED, EXIT_INTERRUPTED, TrainingDiverged, TrainingInterrupted

    try:
        return train(), 0
    except TrainingDiverged as err:
        print(f"lcvae {command}: stopped: {err}", file=sys.stderr)
        return None, EXIT_DIVERGED
    except TrainingInterrupted as err:
        print(f"lcvae {command}: interrupted: {err}", file=sys.stderr)
        return None, EXIT_INTERRUPTED
