"""Latent compression speed, as ratios against a same-size clone() measured in the same run.

Prints JSON. For each latent shape (B, C, T', H', W') it times, interleaved round by round so that a
busy shared machine slows every candidate alike:

* ``clone``: the baseline, a copy of the latent;
* ``forward_paper``, ``forward_reference``: the training path (one 32x32 projection of every 8x2x2
  cell) for the paper and the reference mask;
* ``analysis_mask_synthesis``, ``encode_latent``, ``decode_latent``: the explicit sequences.

Each candidate's per-run times are pooled over ``--rounds`` torch.utils.benchmark blocks; the report
gives min and median (microseconds) and both ratios to clone. With ``--encoder`` it also reports
compression time over encoder time on the same input (:func:`compare_with_encoder`) for the tiny
preset (its paper mask and the reference mask) and the paper's "Chn 8" model (``lcvae-chn8``: 16-channel
latent, reference mask) at 32x256x256, a realistic training size.

    .venv/bin/python benchmarks/bench_compression.py [--threads 2] [--rounds 15] [--encoder]
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Callable

import torch
from torch.utils import benchmark

from lcvae.compression import LatentCompressor, multi_iwt_reference, multi_wt_reference
from lcvae.masks import CompressionConfig

SHAPES = [
    (2, 16, 8, 32, 32),
    (2, 16, 32, 64, 64),
    (2, 8, 8, 32, 32),
    (2, 8, 32, 64, 64),
    (2, 32, 8, 32, 32),
    (2, 32, 32, 64, 64),
]


def interleaved(
    fns: dict[str, Callable[[], object]], rounds: int, block: float = 0.05, once: tuple[str, ...] = ()
) -> dict[str, dict[str, float]]:
    """min and median per-run time (us) of each fn, over ``rounds`` blocks taken in turn.

    A block is torch.utils.benchmark's blocked_autorange of ``block`` seconds, or a single run for
    the names in ``once`` (slow functions such as a full encoder).
    """
    timers = {name: benchmark.Timer(stmt="fn()", globals={"fn": fn}) for name, fn in fns.items()}
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, timer in timers.items():
            measurement = timer.timeit(1) if name in once else timer.blocked_autorange(min_run_time=block)
            times[name].extend(measurement.times)
    return {name: {"min": min(ts) * 1e6, "median": statistics.median(ts) * 1e6} for name, ts in times.items()}


def report(times: dict[str, dict[str, float]], **extra: object) -> dict:
    base = times["clone"]
    return {
        **extra,
        "min_us": {k: round(v["min"], 1) for k, v in times.items()},
        "median_us": {k: round(v["median"], 1) for k, v in times.items()},
        "ratio_to_clone_min": {k: round(v["min"] / base["min"], 2) for k, v in times.items() if k != "clone"},
        "ratio_to_clone_median": {k: round(v["median"] / base["median"], 2) for k, v in times.items() if k != "clone"},
    }


def make_compressor(c: int, dtype: torch.dtype, mask: str) -> LatentCompressor:
    return LatentCompressor(CompressionConfig(mask=mask), c, causal=False).to(dtype)


def bench_shape(shape: tuple[int, ...], rounds: int, plain: bool, dtype: torch.dtype = torch.float32) -> dict:
    c = shape[1]
    z = torch.randn(*shape, dtype=dtype)
    paper = make_compressor(c, dtype, "paper")
    ref = make_compressor(c, dtype, "reference")
    packed = paper.encode_latent(z)
    fns = {
        "clone": lambda: z.clone(),
        "forward_paper": lambda: paper(z),
        "forward_reference": lambda: ref(z),
        "analysis_mask_synthesis": lambda: ref.synthesis(ref.mask(ref.analysis(z))),
        "encode_latent": lambda: paper.encode_latent(z),
        "decode_latent": lambda: paper.decode_latent(packed),
    }
    if plain:
        keep = ref.keep.view(1, -1, 1, 1, 1)
        fns["plain_wavelet_twin"] = lambda: multi_iwt_reference(multi_wt_reference(z) * keep)
    with torch.no_grad():
        times = interleaved(fns, rounds)
    return report(times, shape=list(shape), dtype=str(dtype).replace("torch.", ""))


def compare_with_encoder(
    encode: Callable[[torch.Tensor], torch.Tensor], video: torch.Tensor, compressor: LatentCompressor, rounds: int = 5
) -> dict:
    """Time ``encode(video)`` against the compressor's training path on the latent it produces.

    encode: video (B, 3, T, H, W) in [-1, 1] -> latent (B, C, T', H', W') (e.g. the posterior mode).
    Returns min and median times in microseconds and compression time over encoder time, from the
    same interleaved rounds.
    """
    with torch.no_grad():
        z = encode(video)
        times = interleaved(
            {"encoder": lambda: encode(video), "compression": lambda: compressor(z)}, rounds, 0.2, once=("encoder",)
        )
    enc, comp = times["encoder"], times["compression"]
    return {
        "video": list(video.shape),
        "latent": list(z.shape),
        "encoder_us": {k: round(v, 1) for k, v in enc.items()},
        "compression_us": {k: round(v, 1) for k, v in comp.items()},
        "compression_over_encoder_min": round(comp["min"] / enc["min"], 6),
        "compression_over_encoder_median": round(comp["median"] / enc["median"], 6),
    }


def encoder_comparisons(rounds: int) -> list[dict]:
    """Tiny preset (paper mask, and the C=8 reference mask on the same latent) at 32x64x64, and the
    paper's "Chn 8" LC-VAE (16-channel latent, reference mask) at 32x256x256. Random weights: timing only."""
    from lcvae.models.lcvae import LCVAE  # lazy: the compression benchmark needs no backbone
    from lcvae.models.presets import get_preset

    out = []
    for preset, video_shape in (("lcvae-tiny-noncausal", (1, 3, 32, 64, 64)), ("lcvae-chn8", (1, 3, 32, 256, 256))):
        torch.manual_seed(0)
        model = LCVAE(get_preset(preset)).eval()
        video = torch.rand(*video_shape) * 2 - 1
        compressors = {model.compressor.config.mask: model.compressor}
        if model.compressor.config.mask != "reference":
            c = model.compressor.latent_channels
            compressors["reference"] = LatentCompressor(CompressionConfig(mask="reference"), c, model.compressor.causal)
        for mask, comp in compressors.items():
            out.append(
                {
                    "preset": preset,
                    "mask": mask,
                    **compare_with_encoder(lambda v: model.encode(v).mode(), video, comp, rounds),  # noqa: B023
                }
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--rounds", type=int, default=15, help="interleaved timing blocks per candidate")
    parser.add_argument("--shapes", type=int, nargs="*", help="indices into SHAPES (default: all)")
    parser.add_argument("--plain", action="store_true", help="also time the plain wavelet twin (slow)")
    parser.add_argument("--encoder", action="store_true", help="also compare with the tiny and lcvae-chn8 encoders")
    parser.add_argument(
        "--encoder-rounds", type=int, default=3, help="timing blocks per encoder (lcvae-chn8: ~40 s each)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    shapes = SHAPES if args.shapes is None else [SHAPES[i] for i in args.shapes]
    result = {"torch": torch.__version__, "threads": args.threads, "rounds": args.rounds}
    result["results"] = [bench_shape(s, args.rounds, args.plain) for s in shapes]
    if args.encoder:
        result["encoder"] = encoder_comparisons(args.encoder_rounds)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
