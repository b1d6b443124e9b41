"""torch.compile vs eager: encode, decode and chunked decode of one model, as JSON.

Each call is compiled once (``fullgraph=True``: a graph break is an error) and the compile time
(first call) recorded; then eager and compiled runs alternate round by round, so a busy machine
slows both alike, and the speed-up is eager / compiled on the per-case minimum (medians reported
too). The compiled output is checked against eager (max abs difference reported).

    python benchmarks/bench_compile.py [--preset lcvae-tiny] [--frames 33] [--size 64] [--rounds 5]
        [--device cpu|cuda] [--dtype float32|bfloat16] [--mode default|max-autotune] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import torch

from lcvae.models.lcvae import LCVAE
from lcvae.models.presets import get_preset


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable, arg: torch.Tensor, device: torch.device) -> tuple[float, torch.Tensor]:
    _sync(device)
    t0 = time.perf_counter()
    out = fn(arg)
    _sync(device)
    return time.perf_counter() - t0, out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="lcvae-tiny")
    p.add_argument("--frames", type=int, default=33)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--decode-chunk", type=int, default=4, help="latent frames per chunk of the chunked decode")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--mode", default="default", help="torch.compile mode")
    p.add_argument("--threads", type=int, default=None, help="torch threads (CPU)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)

    torch.manual_seed(0)
    model = LCVAE(get_preset(args.preset)).eval().to(device=device, dtype=dtype)
    video = (torch.rand(1, 3, args.frames, args.size, args.size, device=device) * 2 - 1).to(dtype)
    latent = torch.randn(1, *model.diffusion_shape(args.frames, args.size, args.size), device=device, dtype=dtype)
    cases: dict[str, tuple[Callable, torch.Tensor]] = {
        "encode": (model.diffusion_latent, video),
        "decode": (model.decode_latent, latent),
    }
    if model.causal:
        cases["chunked_decode"] = (lambda z: model.decode_latent(z, chunk=args.decode_chunk), latent)

    result: dict = {
        "preset": args.preset,
        "video": [args.frames, args.size, args.size],
        "device": str(device),
        "dtype": args.dtype,
        "mode": args.mode,
        "threads": torch.get_num_threads(),
        "rounds": args.rounds,
        "torch": torch.__version__,
        "cases": {},
    }
    with torch.no_grad():
        compiled = {}
        for name, (fn, arg) in cases.items():
            compiled[name] = torch.compile(fn, fullgraph=True, mode=None if args.mode == "default" else args.mode)
            seconds, out = _timed(compiled[name], arg, device)
            want = fn(arg)
            result["cases"][name] = {
                "compile_s": round(seconds, 2),
                "max_abs_diff": float((out.float() - want.float()).abs().max()),
            }
        times: dict[str, dict[str, list[float]]] = {name: {"eager": [], "compiled": []} for name in cases}
        for _ in range(args.rounds):
            for name, (fn, arg) in cases.items():
                times[name]["eager"].append(_timed(fn, arg, device)[0])
                times[name]["compiled"].append(_timed(compiled[name], arg, device)[0])
    for name, t in times.items():
        result["cases"][name].update(
            {
                "eager_min_s": round(min(t["eager"]), 4),
                "compiled_min_s": round(min(t["compiled"]), 4),
                "eager_median_s": round(statistics.median(t["eager"]), 4),
                "compiled_median_s": round(statistics.median(t["compiled"]), 4),
                "speedup": round(min(t["eager"]) / min(t["compiled"]), 3),
            }
        )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
