"""lcvae subsets: texture-heavy and fast-motion clips of a dataset, as manifests (supplement D.2)."""

from __future__ import annotations

import argparse

NAME = "subsets"
HELP = "select texture-heavy and fast-motion clips from a dataset and write them as manifests"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data",
        required=True,
        help="a folder of videos, a manifest (.csv/.jsonl), a UCF-101 / Sky Timelapse root, or a video",
    )
    p.add_argument("--data-format", default="auto", help="auto, folder, manifest, ucf101, sky or file")
    p.add_argument(
        "--out", required=True, help="output folder: texture_heavy.jsonl, fast_motion.jsonl, scores.jsonl, subsets.json"
    )
    pick = p.add_mutually_exclusive_group(required=True)
    pick.add_argument("--top-k", type=int, help="keep the K highest-scoring clips per subset")
    pick.add_argument(
        "--quantile", type=float, help="keep clips scoring at or above this quantile (e.g. 0.8: the top fifth)"
    )
    p.add_argument("--frames", type=int, default=33, help="frames per scored clip (use the evaluation's clip length)")
    p.add_argument(
        "--size",
        type=int,
        default=256,
        help="score at this resolution: short side resized and centre-cropped (0: keep)",
    )
    p.add_argument("--start", type=int, default=0, help="first frame of each clip")
    p.add_argument("--stride", type=int, default=1, help="take every STRIDE-th frame")
    p.add_argument(
        "--block", type=int, default=32, help="motion tile size in pixels (measures up to BLOCK/2 pixels per frame)"
    )
    p.add_argument(
        "--min-std",
        type=float,
        default=0.02,
        help="tiles with a flatter luma (std, values in [0, 1]) carry no motion estimate",
    )
    p.add_argument("--max-clips", type=int, help="score only the first N clips")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from lcvae.evaluation import open_dataset
    from lcvae.subsets import score_dataset, write_subsets

    size = args.size or None
    dataset = open_dataset(
        args.data, args.data_format, frames=args.frames, size=size, start_frame=args.start, frame_stride=args.stride
    )
    rows, skipped = score_dataset(dataset, args.block, args.min_std, args.max_clips, not args.no_progress)
    clip = {
        "num_frames": args.frames,
        "size": size,
        "start_frame": args.start,
        "frame_stride": args.stride,
        "block": args.block,
        "min_std": args.min_std,
    }
    summary = write_subsets(
        rows, args.out, args.top_k, args.quantile, clip, {"data": str(args.data), "clips_skipped": skipped}
    )
    print(f"scored {summary['clips_scored']} clips ({summary['clips_skipped']} skipped)")
    for name, info in summary["subsets"].items():
        print(
            f"{name}: {info['count']} clips with {info['score']} >= {info['threshold']:.4g} "
            f"(median {info['median_subset']:.4g} vs {info['median_all']:.4g} overall) -> {args.out}/{info['manifest']}"
        )
    size_arg = f" --size {args.size}" if args.size else ""
    print(f"evaluate with: lcvae eval --data {args.out}/<subset>.jsonl --start {args.start}{size_arg} --out DIR ...")
    return 0
