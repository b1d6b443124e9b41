"""bf16 (and optionally fp16) against fp32 for a WF-VAE with random weights, as JSON: output PSNR and speed.

A bf16 model is ``model.to(torch.bfloat16)`` fed a bf16 video; the PSNR is of its encode + decode output
against the fp32 model's, on outputs mapped from [-1, 1] to [0, 1]. Speed: encode + decode seconds,
the minimum over ``--rounds`` rounds that interleave the dtypes (a shared machine's speed drifts).
fp16 on a CPU runs its guarded convolutions in fp16 with slow kernels: ask for it with ``--fp16`` on
CUDA (``--device cuda``), where it is a speed option.

    python benchmarks/bench_dtype.py [--preset wfvae-l-16] [--frames 17] [--size 128]
        [--psnr-frames 9] [--psnr-size 64] [--rounds 3] [--threads 2] [--device cpu] [--fp16]
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time

import torch

from lcvae.models.autoencoder import WFVAE
from lcvae.models.presets import get_preset


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of ``a`` against ``b``, both mapped from [-1, 1] to [0, 1]."""
    mse = ((a.float() - b.float()) / 2).square().mean().item()
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="wfvae-l-16")
    ap.add_argument("--frames", type=int, default=17)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--psnr-frames", type=int, default=9)
    ap.add_argument("--psnr-size", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--fp16", action="store_true", help="also fp16 (meant for CUDA)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16, **({"fp16": torch.float16} if args.fp16 else {})}
    base = WFVAE(get_preset(args.preset).backbone).eval().to(device)
    models = {name: base if dt == torch.float32 else copy.deepcopy(base).to(dt) for name, dt in dtypes.items()}

    def run(name: str, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            out = models[name].decode(models[name].encode(x.to(dtypes[name])).mode())
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return out

    result: dict = {"preset": args.preset, "weights": "random", "threads": args.threads, "device": str(device)}
    g = torch.Generator().manual_seed(1)
    for key, frames, size in (("psnr_small", args.psnr_frames, args.psnr_size), ("psnr_timed", args.frames, args.size)):
        x = (torch.rand(1, 3, frames, size, size, generator=g) * 2 - 1).to(device)
        outs = {name: run(name, x) for name in dtypes}
        result[key] = {
            "input": [1, 3, frames, size, size],
            **{f"{n}_vs_fp32_db": round(psnr(outs[n], outs["fp32"]), 2) for n in dtypes if n != "fp32"},
        }
    times: dict[str, list[float]] = {name: [] for name in dtypes}
    for _ in range(args.rounds):  # the PSNR runs above were the warm-up
        for name in dtypes:
            t0 = time.perf_counter()
            run(name, x)
            times[name].append(time.perf_counter() - t0)
    result["seconds"] = {name: round(min(t), 3) for name, t in times.items()}
    result["speedup_vs_fp32"] = {n: round(min(times["fp32"]) / min(times[n]), 2) for n in dtypes if n != "fp32"}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
