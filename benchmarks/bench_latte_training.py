"""Latte training from the latent cache against encoding every batch with the VAE (as the reference
did), and sampling time per video; the same tiny models in the same run. Prints JSON.

Three ways to get one training step's latents, each followed by the same Latte forward + backward +
AdamW step:
- "cache": read the batch from a LatentCache (memory-mapped safetensors shards);
- "encode": the videos are already decoded in memory and are encoded by the VAE every step;
- "decode_and_encode": the reference's full data path, decoding the clips from the video files
  (PyAV, resize, crop) and encoding them every step.
The ratios divide the two encoding paths by the cache path. Sampling: seconds per video for DDPM
(250 respaced steps) and DDIM (50 steps), including decoding through the VAE.

    .venv/bin/python benchmarks/bench_latte_training.py [--preset tiny-deep] [--batch 4] [--size 32] [--steps 8]
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from lcvae.data import VideoFolder, collate, sample_clip_paths
from lcvae.diffusion import GaussianDiffusion
from lcvae.latent_cache import CacheRequest, LatentCache, cache_latents
from lcvae.models.latte import Latte, LatteConfig
from lcvae.models.lcvae import LCVAE
from lcvae.models.presets import get_preset
from lcvae.sampling import decode_latents, sample_latents


def median_seconds(fns: dict, steps: int, warmup: int = 2) -> dict[str, float]:
    """Median seconds per call of each function; calls are interleaved (a, b, c, a, b, c, ...) so
    that load from other processes on shared cores falls on every path alike."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(steps):
        for name, fn in fns.items():
            tic = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - tic)
    return {name: statistics.median(ts) for name, ts in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vae", default="lcvae-tiny", help="VAE preset (random weights: only speed is measured)")
    parser.add_argument("--preset", default="tiny-deep", help="Latte preset")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--frames", type=int, default=33)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10, help="timed training steps per path")
    parser.add_argument("--videos", type=int, default=4, help="videos for the sampling timing")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    vae = LCVAE(get_preset(args.vae)).eval()
    shape = vae.config.diffusion_shape(args.frames, args.size, args.size)
    latte = Latte(LatteConfig.from_preset(args.preset, in_channels=shape[0], num_frames=shape[1], input_size=shape[2:]))
    opt = torch.optim.AdamW(latte.parameters(), lr=1e-4, weight_decay=0.0)
    diffusion = GaussianDiffusion()

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "videos"
        folder.mkdir()
        for name, path in sample_clip_paths().items():
            if name.startswith("carphone"):  # small clips: decoding cost like a 256p dataset's, per pixel
                (folder / f"{name}.mp4").symlink_to(path)
        videos = VideoFolder(folder, num_frames=args.frames, short_side=args.size, crop=args.size, random_start=True)
        request = CacheRequest(frames=args.frames, height=args.size, width=args.size, passes=4, shard_size=8)
        tic = time.perf_counter()
        cache_latents(vae, videos, Path(tmp) / "cache", request, batch_size=args.batch)
        cache_seconds = time.perf_counter() - tic
        cache = LatentCache(Path(tmp) / "cache", vae=vae)
        keys = [(e, i) for e in range(4) for i in range(len(videos))]
        in_memory = torch.stack([videos[k]["video"] for k in keys[: args.batch]])
        cache_starts = itertools.cycle(range(0, len(cache) - args.batch + 1, args.batch))
        video_starts = itertools.cycle(range(0, len(keys) - args.batch + 1, args.batch))

        def train_step(x0: torch.Tensor) -> None:
            t = torch.randint(0, 1000, (x0.shape[0],))
            loss = diffusion.training_losses(lambda x, tt: latte(x, tt), x0, t).loss.mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        def from_cache() -> None:
            start = next(cache_starts)
            train_step(torch.stack([cache[i]["latent"] for i in range(start, start + args.batch)]))

        def encode() -> None:
            with torch.no_grad():
                x0 = vae.diffusion_latent(in_memory)
            train_step(x0)

        def decode_and_encode() -> None:
            start = next(video_starts)
            batch = collate([videos[k] for k in keys[start : start + args.batch]])
            with torch.no_grad():
                x0 = vae.diffusion_latent(batch["video"])
            train_step(x0)

        step = median_seconds(
            {"cache": from_cache, "encode": encode, "decode_and_encode": decode_and_encode}, args.steps
        )

    latte.eval()
    sampling = {}
    for method, steps in (("ddpm", 250), ("ddim", 50)):
        tic = time.perf_counter()
        z = sample_latents(latte, diffusion, shape, list(range(args.videos)), seed=0, steps=steps, method=method)
        decode_latents(vae, z)
        sampling[f"{method}_{steps}_seconds_per_video"] = (time.perf_counter() - tic) / args.videos

    result = {
        "vae": args.vae,
        "latte": args.preset,
        "batch": args.batch,
        "video": [args.frames, args.size, args.size],
        "latent": list(shape),
        "threads": args.threads,
        "timed_steps": args.steps,
        "step_seconds": step,
        "encode_over_cache": step["encode"] / step["cache"],
        "decode_and_encode_over_cache": step["decode_and_encode"] / step["cache"],
        "cache_build_seconds_per_latent": cache_seconds / len(cache),
        "sampling": {**sampling, "videos": args.videos, "batch": args.videos},
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
