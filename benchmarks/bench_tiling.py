"""Spatial tiling: error of tiled against untiled reconstruction, and peak memory, as JSON.

With random weights the error mostly measures how far features travel in an untrained network; pass
a trained checkpoint (``--model FOLDER``) for a number that means something for real use.

    python benchmarks/bench_tiling.py [--model FOLDER|PRESET] [--size 128] [--tiles 64 96] [--overlaps 16 32]
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch

from lcvae.inference import load_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="lcvae-tiny")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--frames", type=int, default=33)
    ap.add_argument("--tiles", type=int, nargs="+", default=[64, 96])
    ap.add_argument("--overlaps", type=int, nargs="+", default=[16, 32])
    args = ap.parse_args()
    torch.manual_seed(0)
    model = load_model(args.model, random_weights=True)
    # a smooth moving pattern, so errors are measured on video-like content rather than white noise
    t = torch.linspace(0, 1, args.frames).view(1, 1, -1, 1, 1)
    yy = torch.linspace(0, 6.28, args.size).view(1, 1, 1, -1, 1)
    xx = torch.linspace(0, 6.28, args.size).view(1, 1, 1, 1, -1)
    x = torch.cat([torch.sin(yy * k + xx * (4 - k) + 3 * t) for k in (1, 2, 3)], dim=1) * 0.8
    with torch.no_grad():
        t0 = time.perf_counter()
        ref = model.reconstruct(x)
        whole_s = time.perf_counter() - t0
        rows = []
        for tile in args.tiles:
            for overlap in args.overlaps:
                if overlap >= tile:
                    continue
                t0 = time.perf_counter()
                out = model.reconstruct(x, tile=tile, overlap=overlap)
                dt = time.perf_counter() - t0
                err = (out - ref).abs()
                mse = ((out - ref) / 2).pow(2).mean().item()
                rows.append(
                    {
                        "tile": tile,
                        "overlap": overlap,
                        "max_abs_err": round(err.max().item(), 5),
                        "mean_abs_err": round(err.mean().item(), 6),
                        "psnr_vs_untiled_db": round(10 * math.log10(1 / max(mse, 1e-12)), 2),
                        "time_ratio_vs_untiled": round(dt / whole_s, 2),
                    }
                )
    print(json.dumps({"model": args.model, "input": list(x.shape), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
