"""lcvae eval: reconstruct a dataset with a checkpoint and score it (PSNR, SSIM, LPIPS, rFVD)."""

from __future__ import annotations

import argparse

NAME = "eval"
HELP = "reconstruct a dataset and write metrics.json, per_clip.jsonl, metrics.md and sample clips"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="checkpoint folder (ours or the official WF-VAE), or a preset with --random-weights")
    p.add_argument("--random-weights", action="store_true", help="allow a preset name (untrained weights: for trying the pipeline)")
    p.add_argument("--data", required=True, help="folder of videos, manifest (.csv/.jsonl), UCF-101 root or Sky Timelapse root")
    p.add_argument("--data-format", default="auto", help="auto, folder, manifest, ucf101, sky or file (auto: a video file is one clip, another file a manifest, a folder a folder of videos)")
    p.add_argument("--split-file", help="UCF-101 official split list (trainlistNN.txt / testlistNN.txt)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--frames", type=int, help="frames per clip (default: the shortest valid count >= 16, e.g. 33 for a causal LC-VAE)")
    p.add_argument("--size", type=int, default=256, help="resize the short side and centre-crop to SIZE x SIZE (0: keep, crop to the model's multiple)")
    p.add_argument("--stride", type=int, default=1, help="take every STRIDE-th frame")
    p.add_argument("--start", type=int, default=0, help="first frame of each clip")
    p.add_argument("--max-clips", type=int, help="evaluate only the first N clips")
    p.add_argument("--protocol", default="standard", choices=["standard", "reference"],
                   help="standard: [-1, 1], posterior mode, fp32, dataset-level rFVD; reference: the authors' quirks (SPEC §6)")
    p.add_argument("--compress", metavar="MASK", help="apply a compression mask at inference only: paper, keep25, keep75, reference, or a mask .json")
    p.add_argument("--degrade-qp", type=int, help="re-encode inputs with H.264 at this QP and score against degraded and clean clips")
    p.add_argument("--lpips", default="alex", help="alex or vgg (LPIPS: needs --lpips-backbone), st-alex or st-vgg (ST-LPIPS: weights ship with stlpips-pytorch), or none")
    p.add_argument("--lpips-backbone", help="torchvision ImageNet AlexNet/VGG16 weights for LPIPS")
    i3d = p.add_mutually_exclusive_group()
    i3d.add_argument("--i3d", help="I3D weights: StyleGAN-V i3d_torchscript.pt or a pytorch-i3d state dict")
    i3d.add_argument("--i3d-random", action="store_true", help="random-weight I3D (pipeline test; the rFVD means nothing)")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (one GPU per rank under torchrun)")
    p.add_argument("--chunk", type=int, help="encode this many frames at a time (causal models)")
    p.add_argument("--decode-chunk", type=int, help="decode this many latent frames at a time (causal models)")
    p.add_argument("--tile", type=int, help="process frames in spatial tiles of this many pixels")
    p.add_argument("--samples", type=int, default=4, help="write the first N clips side by side (mp4 + png grid)")
    p.add_argument("--seed", type=int, default=0, help="posterior samples of the reference protocol")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from lcvae.evaluation import EvalOptions, evaluate_checkpoint, format_table

    options = EvalOptions(
        protocol=args.protocol, batch_size=args.batch_size, num_workers=args.workers, device=args.device,
        chunk=args.chunk, decode_chunk=args.decode_chunk, tile=args.tile, lpips=args.lpips,
        lpips_backbone=args.lpips_backbone, i3d=args.i3d, i3d_random=args.i3d_random,
        degrade_qp=args.degrade_qp, max_clips=args.max_clips, samples=args.samples, seed=args.seed,
        progress=not args.no_progress,
    )
    result, paths = evaluate_checkpoint(
        args.model, args.data, args.out, options, data_format=args.data_format, frames=args.frames,
        size=args.size or None, frame_stride=args.stride, start_frame=args.start, split_file=args.split_file,
        compress=args.compress, random_weights=args.random_weights,
    )
    if paths:  # rank 0
        print(format_table(result), end="")
        print(f"wrote {paths['metrics']}, {paths['per_clip']}, {paths['table']}")
    return 0
