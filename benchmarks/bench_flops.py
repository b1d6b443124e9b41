"""Encode + decode FLOP rate of a WF-VAE as a fraction of the machine's best convolution rate, fp32 and bf16.

The baseline is the model's own convolutions run alone on oneDNN (``aten.mkldnn_convolution``, the
fastest CPU kernel torch has, in both dtypes), each at the input shape it sees inside the model,
measured in the same run. Its rate is FLOP-weighted: all convolution FLOPs / the summed best times of
the convolutions, i.e. the rate the model would reach if everything but its convolutions were free
and every convolution ran at its best. The fraction "model rate / baseline rate" is therefore
(convolutions alone) / (whole model): what norms, attention, wavelets, copies and layout changes cost.

FLOPs are counted with torch.utils.flop_counter on the plain path (convolutions and attention
matmuls; elementwise work is not counted). Rounds interleave the fp32 model, the bf16 model and the
two convolution sets, and every time is the minimum over rounds (a shared machine's speed drifts).

    python benchmarks/bench_flops.py [--preset wfvae-l-16] [--frames 17] [--size 128] [--rounds 3]
        [--threads 2] [--profile]
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from collections.abc import Callable
from unittest import mock

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from lcvae.models import layers, onednn
from lcvae.models.autoencoder import WFVAE
from lcvae.models.presets import get_preset


def best_time(fn: Callable[[], object], times: list[float]) -> None:
    t0 = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t0)


def conv_shapes(model: WFVAE, run: Callable[[], object]) -> dict[tuple, dict]:
    """Every distinct convolution the model runs: key (input shape, weight shape, stride, padding, dilation,
    groups) -> {"flops": per call, "calls": n, "weight", "bias"}. Per-frame 2D convolutions on a video
    are recorded as the 3D convolutions with a (1, kh, kw) kernel that ``layers.conv_frames`` runs."""
    seen: dict[tuple, dict] = {}
    plain, plain_frames = layers.conv, layers.conv_frames

    def add(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, geometry: tuple) -> None:
        key = (tuple(x.shape), tuple(w.shape), *geometry)
        k = w.shape[1] * w[0, 0].numel()  # cin/groups * kernel volume
        entry = seen.setdefault(key, {"flops": 2 * y.numel() * k, "calls": 0, "weight": w, "bias": b})
        entry["calls"] += 1

    def record(layer: nn.Conv2d | nn.Conv3d, x: torch.Tensor) -> torch.Tensor:
        y = plain(layer, x)
        add(x, y, layer.weight, layer.bias, (layer.stride, layer.padding, layer.dilation, layer.groups))
        return y

    def record_frames(layer: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
        y = plain_frames(layer, x)
        geometry = ((1, *layer.stride), (0, *layer.padding), (1, *layer.dilation), layer.groups)
        add(x, y, layer.weight.unsqueeze(2), layer.bias, geometry)
        return y

    with mock.patch.object(layers, "conv", record), mock.patch.object(layers, "conv_frames", record_frames):
        with torch.no_grad():
            run()
    return seen


def conv_set_runner(
    shapes: dict[tuple, dict], dtype: torch.dtype, channels_last: bool
) -> list[tuple[Callable[[], object], dict]]:
    """One oneDNN call per distinct shape on random data of ``dtype``, channels-first or channels-last; the
    weight as the model stores it (PyTorch lays it out like the input on every call, as in the model)."""
    calls = []
    for (xs, _ws, stride, padding, dilation, groups), entry in shapes.items():
        x = torch.randn(xs).to(dtype)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last_3d if x.dim() == 5 else torch.channels_last)
        w = entry["weight"].detach().to(dtype)
        b = None if entry["bias"] is None else entry["bias"].detach().to(dtype)
        args = (x, w, b, list(padding), list(stride), list(dilation), groups)
        calls.append((lambda a=args: torch.ops.aten.mkldnn_convolution(*a), entry))
    return calls


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR of ``a`` against ``b`` for videos in [-1, 1] (peak-to-peak 2)."""
    mse = (a.float() - b.float()).square().mean().item()
    return float("inf") if mse == 0 else 10 * math.log10(4.0 / mse)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="wfvae-l-16")
    ap.add_argument("--frames", type=int, default=17)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--profile", action="store_true", help="also print torch.profiler's top ops per dtype")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    models = {"fp32": WFVAE(get_preset(args.preset).backbone).eval()}
    models["bf16"] = copy.deepcopy(models["fp32"]).to(torch.bfloat16)
    x = torch.rand(1, 3, args.frames, args.size, args.size) * 2 - 1
    inputs = {"fp32": x, "bf16": x.bfloat16()}

    def runner(name: str) -> Callable[[], object]:
        def run() -> object:
            with torch.no_grad():
                return models[name].decode(models[name].encode(inputs[name]).mode())

        return run

    # FlopCounterMode counts aten.convolution: count on the plain path (the same convolutions).
    no_onednn = (mock.patch.object(m, "_mkldnn_ok", lambda x, w: False) for m in (layers, onednn))
    with next(no_onednn), next(no_onednn), FlopCounterMode(display=False) as counter:
        outputs = {"fp32": runner("fp32")()}
    flops = counter.get_total_flops()
    shapes = conv_shapes(models["fp32"], runner("fp32"))
    conv_flops = sum(e["flops"] * e["calls"] for e in shapes.values())
    # each shape's best time over both memory layouts: the baseline is the fastest kernel, not ours
    sets = {
        name: [*conv_set_runner(shapes, dt, False), *conv_set_runner(shapes, dt, True)]
        for name, dt in (("fp32", torch.float32), ("bf16", torch.bfloat16))
    }

    model_times: dict[str, list[float]] = {"fp32": [], "bf16": []}
    conv_times = {name: [[] for _ in calls] for name, calls in sets.items()}
    for name in ("fp32", "bf16"):  # warm-up: oneDNN primitive creation, allocator
        outputs[name] = runner(name)()
        for fn, _ in sets[name]:
            fn()
    for _ in range(args.rounds):
        for name in ("fp32", "bf16"):
            best_time(runner(name), model_times[name])
            for (fn, _entry), times in zip(sets[name], conv_times[name]):
                best_time(fn, times)

    result: dict = {
        "preset": args.preset,
        "input": [1, 3, args.frames, args.size, args.size],
        "threads": args.threads,
        "rounds": args.rounds,
        "gflop": round(flops / 1e9, 1),
        "conv_gflop": round(conv_flops / 1e9, 1),
        "distinct_convolutions": len(shapes),
    }
    n = len(shapes)
    best = {name: [min(min(a), min(b)) for a, b in zip(conv_times[name][:n], conv_times[name][n:])] for name in sets}
    entries = list(shapes.values())
    for name in ("fp32", "bf16"):
        conv_s = sum(t * e["calls"] for e, t in zip(entries, best[name]))
        rates = [e["flops"] / t for e, t in zip(entries, best[name])]
        layout_wins = sum(min(b) < min(a) for a, b in zip(conv_times[name][:n], conv_times[name][n:]))
        model_s = min(model_times[name])
        baseline = conv_flops / conv_s
        result[name] = {
            "model_seconds": round(model_s, 3),
            "model_gflops_per_s": round(flops / model_s / 1e9, 1),
            "baseline_gflops_per_s": round(baseline / 1e9, 1),
            "fastest_single_conv_gflops_per_s": round(max(rates) / 1e9, 1),
            "convs_alone_seconds": round(conv_s, 3),
            "shapes_faster_channels_last": f"{layout_wins}/{n}",
            "fraction_of_conv_baseline": round(flops / model_s / baseline, 3),
        }
    result["bf16_speedup"] = round(min(model_times["fp32"]) / min(model_times["bf16"]), 2)
    result["bf16_psnr_db_vs_fp32"] = round(psnr(outputs["bf16"], outputs["fp32"]), 1)
    result["model_seconds_all_rounds"] = {k: [round(t, 3) for t in v] for k, v in model_times.items()}
    top = sorted(
        zip(shapes.items(), best["fp32"], best["bf16"]), key=lambda kv: -kv[0][1]["flops"] * kv[0][1]["calls"]
    )[:6]
    result["dominant_convs"] = [
        {
            "input": "x".join(map(str, k[0])),
            "weight": "x".join(map(str, k[1])),
            "stride": "x".join(map(str, k[2])),
            "calls": e["calls"],
            "share_of_conv_flops": round(e["flops"] * e["calls"] / conv_flops, 3),
            "fp32_gflops_per_s": round(e["flops"] / t32 / 1e9, 1),
            "bf16_gflops_per_s": round(e["flops"] / t16 / 1e9, 1),
        }
        for (k, e), t32, t16 in top
    ]
    print(json.dumps(result, indent=2))
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        for name in ("fp32", "bf16"):
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                runner(name)()
            print(f"== {name}")
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=18))


if __name__ == "__main__":
    main()
