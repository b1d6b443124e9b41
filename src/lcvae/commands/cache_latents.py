"""lcvae cache-latents: encode a video dataset once into sharded diffusion latents (runs under torchrun)."""

from __future__ import annotations

import argparse

from lcvae.commands.common import report_nothing_done

NAME = "cache-latents"
HELP = "encode a video dataset into a latent cache for diffusion training (resumable, torchrun-aware)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="VAE checkpoint folder (ours or the official WF-VAE)")
    p.add_argument("--data", required=True, help="dataset root folder, or a .csv/.jsonl manifest")
    p.add_argument("--out", required=True, help="cache folder (an interrupted cache here is resumed)")
    p.add_argument(
        "--dataset",
        choices=["auto", "folder", "manifest", "ucf101", "sky", "file"],
        default="auto",
        help="layout of --data (auto: one video for a video file, a manifest for another file, else a folder)",
    )
    p.add_argument("--split-file", help="UCF-101 trainlistNN.txt / testlistNN.txt")
    p.add_argument(
        "--frames",
        type=int,
        required=True,
        help="frames per clip (the VAE's rule: e.g. 1 + 32k causal, 32k non-causal)",
    )
    p.add_argument("--size", type=int, required=True, help="short side resize and square centre crop, in pixels")
    p.add_argument("--random-crop", action="store_true", help="random instead of centre crop")
    p.add_argument(
        "--first-frame", action="store_true", help="clips start at frame 0 (default: a random start per pass)"
    )
    p.add_argument("--frame-stride", type=int, default=1)
    p.add_argument("--target-fps", type=float, help="resample clips to this frame rate (video files only)")
    p.add_argument("--passes", type=int, default=1, help="epochs of the dataset to cache (different random clips each)")
    p.add_argument("--shard-size", type=int, default=256, help="latents per shard file")
    p.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32", help="storage precision of the latents")
    p.add_argument("--sample-posterior", action="store_true", help="store posterior samples instead of the mode")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, default=4, help="videos per encoder batch")
    p.add_argument("--chunk", type=int, help="encode this many frames at a time (causal models)")
    p.add_argument("--workers", type=int, default=2, help="DataLoader worker processes for decoding")
    p.add_argument("--device", default="auto", help="torch device (auto: this rank's GPU if any, else cpu)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (or progress log lines)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from lcvae.data.sources import clip_fps, dataset_num_classes, open_clip_dataset, resolve_kind
    from lcvae.latent_cache import CacheRequest, cache_latents
    from lcvae.models.io import from_pretrained
    from lcvae.train.distributed import barrier, cleanup_distributed, init_distributed

    info = init_distributed()
    kind = resolve_kind(args.data, args.dataset)
    clip = dict(
        num_frames=args.frames,
        frame_stride=args.frame_stride,
        target_fps=args.target_fps,
        random_start=not args.first_frame,
        short_side=args.size,
        crop=args.size,
        random_crop=args.random_crop,
        seed=args.seed,
    )
    dataset = open_clip_dataset(kind, args.data, split_file=args.split_file, **clip)
    request = CacheRequest(
        frames=args.frames,
        height=args.size,
        width=args.size,
        dtype=args.dtype,
        passes=args.passes,
        shard_size=args.shard_size,
        sample_posterior=args.sample_posterior,
        seed=args.seed,
        fps=clip_fps(dataset),
        num_classes=dataset_num_classes(dataset),
        dataset={"kind": kind, "path": str(Path(args.data).resolve()), "split_file": args.split_file, **clip},
    )
    device = info.device if args.device == "auto" else args.device
    report = cache_latents(
        from_pretrained(args.model),
        dataset,
        args.out,
        request,
        vae_source=str(args.model),
        batch_size=args.batch,
        device=device,
        num_workers=args.workers,
        chunk=args.chunk,
        rank=info.rank,
        world_size=info.world_size,
        barrier=barrier,
        progress=not args.no_progress,
    )
    cleanup_distributed()
    if not info.is_main:
        return 0
    state = "complete" if report.complete else "INCOMPLETE (rerun to finish)"
    print(
        f"{args.out}: {state}; this run encoded {len(report.encoded_shards)} shards ({report.items} latents, "
        f"{report.skipped_videos} unreadable videos skipped), {len(report.skipped_shards)} shards were already done"
    )
    if not report.complete:
        return 1
    return report_nothing_done(
        report.cached_items, [(s["path"], s["reason"]) for s in report.skipped], "latents cached"
    )
