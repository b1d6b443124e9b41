"""lcvae eval: reconstruct a dataset with a checkpoint and score it (PSNR, SSIM, LPIPS, rFVD)."""

from __future__ import annotations

import argparse

from lcvae.commands.common import add_eval_options, check_output_folder, eval_options, report_nothing_done

NAME = "eval"
HELP = "reconstruct a dataset and write metrics.json, per_clip.jsonl, metrics.md and sample clips"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        required=True,
        help="checkpoint folder (ours or the official WF-VAE), or a preset with --random-weights",
    )
    p.add_argument(
        "--random-weights", action="store_true", help="allow a preset name (untrained weights: for trying the pipeline)"
    )
    p.add_argument(
        "--data", required=True, help="folder of videos, manifest (.csv/.jsonl), UCF-101 root or Sky Timelapse root"
    )
    p.add_argument(
        "--data-format",
        default="auto",
        help="auto, folder, manifest, ucf101, sky or file (auto: a video file is one clip, another file a manifest, a folder a folder of videos)",
    )
    p.add_argument("--split-file", help="UCF-101 official split list (trainlistNN.txt / testlistNN.txt)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument(
        "--frames",
        type=int,
        help="frames per clip (default 33 for every model, so models are compared on the "
        "same clips; non-causal models need --frames, e.g. 32)",
    )
    p.add_argument(
        "--size",
        type=int,
        help="resize the short side and centre-crop to SIZE x SIZE (default: frames keep "
        "their stored size; a clip the model cannot take is skipped with the reason)",
    )
    p.add_argument(
        "--fit",
        default="error",
        choices=["error", "crop"],
        help="crop: centre-crop stored frames to the model's spatial multiple (without --size)",
    )
    p.add_argument(
        "--pad",
        action="store_true",
        help="pad each clip to the model's next valid length and size by repeating the last frame and the "
        "edge pixels, and score the output cropped back (any --frames for any model)",
    )
    p.add_argument("--stride", type=int, default=1, help="take every STRIDE-th frame")
    p.add_argument("--start", type=int, default=0, help="first frame of each clip")
    p.add_argument(
        "--compress",
        metavar="MASK",
        help="apply a compression mask at inference only: paper, keep25, keep75, reference, or a mask .json",
    )
    p.add_argument(
        "--degrade-qp",
        type=int,
        help="re-encode inputs with H.264 at this QP and score against degraded and clean clips",
    )
    add_eval_options(p, samples=4)


def run(args: argparse.Namespace) -> int:
    import sys

    from lcvae.evaluation import EVAL_FRAMES, describe_clips, evaluate_checkpoint, format_table

    if args.size is not None and args.size <= 0:
        raise ValueError(
            f"--size must be a positive number of pixels, got {args.size}; leave it out to keep the stored size"
        )
    check_output_folder(args.out)
    options = eval_options(args, degrade_qp=args.degrade_qp, pad=args.pad)
    print(
        f"eval clips: {describe_clips(args.frames or EVAL_FRAMES, args.size, args.fit, args.stride, args.start, args.pad)}",
        file=sys.stderr,
    )
    result, paths = evaluate_checkpoint(
        args.model,
        args.data,
        args.out,
        options,
        data_format=args.data_format,
        frames=args.frames,
        size=args.size,
        fit=args.fit,
        frame_stride=args.stride,
        start_frame=args.start,
        split_file=args.split_file,
        compress=args.compress,
        random_weights=args.random_weights,
    )
    if not paths:  # another rank writes the report
        return 0 if result.clips_used else 1
    print(format_table(result), end="")
    print(f"wrote {paths['metrics']}, {paths['per_clip']}, {paths['table']}")
    return report_nothing_done(result.clips_used, [(s.path, s.reason) for s in result.skipped], "clips evaluated")
