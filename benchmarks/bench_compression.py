"""Latent compression speed, as ratios against a same-size clone() measured in the same run.

Prints JSON. For each latent shape: medians (microseconds) of clone, the training path
(forward = fused Multi-WT + mask + Multi-IWT projection) for the paper mask (temporal-only fast path)
and the reference mask (general path), the explicit analysis -> mask -> synthesis sequence, the plain
wavelet-composition twin, and pack/unpack; plus each ratio to clone. With --encoder it also times a
tiny WF-VAE encoder on a video whose latent has the first shape, via :func:`compare_with_encoder`.

    .venv/bin/python benchmarks/bench_compression.py [--threads 2] [--encoder]
"""

from __future__ import annotations

import argparse
import json
from typing import Callable

import torch
from torch.utils import benchmark

from lcvae.compression import CompressionConfig, LatentCompressor, multi_iwt_reference, multi_wt_reference

SHAPES = [(2, 16, 8, 32, 32), (2, 16, 32, 64, 64)]


def median_us(fn: Callable[[], object], min_run_time: float = 0.5) -> float:
    """Median wall time of fn() in microseconds (torch.utils.benchmark handles warm-up and repeats)."""
    timer = benchmark.Timer(stmt="fn()", globals={"fn": fn})
    return timer.blocked_autorange(min_run_time=min_run_time).median * 1e6


def bench_shape(shape: tuple[int, ...], dtype: torch.dtype = torch.float32) -> dict:
    c = shape[1]
    z = torch.randn(*shape, dtype=dtype)
    paper = LatentCompressor(CompressionConfig(latent_channels=c, mask="paper")).to(dtype)
    ref = LatentCompressor(CompressionConfig(latent_channels=c, mask="reference")).to(dtype)
    keep = ref.keep.view(1, -1, 1, 1, 1)
    packed = paper.encode_latent(z)
    with torch.no_grad():
        times = {
            "clone": median_us(lambda: z.clone()),
            "forward_paper": median_us(lambda: paper(z)),
            "forward_reference": median_us(lambda: ref(z)),
            "analysis_mask_synthesis": median_us(lambda: ref.synthesis(ref.mask(ref.analysis(z)))),
            "plain_wavelet_twin": median_us(lambda: multi_iwt_reference(multi_wt_reference(z) * keep)),
            "encode_latent": median_us(lambda: paper.encode_latent(z)),
            "decode_latent": median_us(lambda: paper.decode_latent(packed)),
        }
    base = times["clone"]
    return {
        "shape": list(shape),
        "dtype": str(dtype).replace("torch.", ""),
        "median_us": {k: round(v, 1) for k, v in times.items()},
        "ratio_to_clone": {k: round(v / base, 2) for k, v in times.items() if k != "clone"},
    }


def compare_with_encoder(encode: Callable[[torch.Tensor], torch.Tensor], video: torch.Tensor, compressor: LatentCompressor) -> dict:
    """Time ``encode(video)`` against the compressor's training path on the latent it produces.

    encode: video (B, 3, T, H, W) in [-1, 1] -> latent (B, C, T', H', W') (e.g. the posterior mode).
    Returns medians in microseconds and compression time as a fraction of encoder time.
    """
    with torch.no_grad():
        z = encode(video)
        enc = median_us(lambda: encode(video), min_run_time=2.0)
        comp = median_us(lambda: compressor(z))
    return {
        "video": list(video.shape),
        "latent": list(z.shape),
        "encoder_us": round(enc, 1),
        "compression_us": round(comp, 1),
        "compression_over_encoder": round(comp / enc, 5),
    }


def _tiny_encoder_comparison() -> dict:
    from lcvae.models.lcvae import LCVAE  # lazy: the compression benchmark needs no backbone
    from lcvae.models.presets import get_preset

    model = LCVAE(get_preset("lcvae-tiny-noncausal")).eval()
    video = torch.rand(1, 3, 32, 64, 64) * 2 - 1
    return {"preset": "lcvae-tiny-noncausal", **compare_with_encoder(lambda v: model.encode(v).mode(), video, model.compressor)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--encoder", action="store_true", help="also compare against a tiny WF-VAE encoder")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    report = {"torch": torch.__version__, "threads": args.threads, "results": [bench_shape(s) for s in SHAPES]}
    if args.encoder:
        report["encoder"] = _tiny_encoder_comparison()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
