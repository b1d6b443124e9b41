"""Device checks and timings for one accelerator run (called by benchmarks/gpu_check.sh), as JSON.

Checks on the tiny LC-VAE (assertions; a failure exits non-zero after printing what was measured):
the device's fp32 output equals the CPU's (TF32 off), chunked decoding equals whole decoding, the
bf16 and fp16 models' outputs are at least 40 dB PSNR from fp32's, and torch.compile (inductor)
equals eager. WF-VAE-L runs in fp32, bf16 and fp16 (guarded convolutions, lcvae.models.layers).
``--check-train DIR`` instead checks a training run folder (metrics.jsonl, checkpoints) after
``lcvae train-vae`` ran to ``--resumed-from`` steps and was resumed to ``--steps`` (gpu_check.sh).
Timings on WF-VAE-L with random weights (the paper's anchor: 0.05 s encode + 0.15 s decode of
33x256x256 on an H100; 7.2 GB to encode 33x512x512): encode and decode, fp32 and bf16, minimum of
``--repeats`` runs after a warm-up, and peak allocated memory of an encode at ``--mem-size``.

    python benchmarks/gpu_bench.py [--device cuda] [--preset wfvae-l-16] [--frames 33] [--size 256]
        [--mem-size 512] [--repeats 5] [--skip-compile]
    python benchmarks/gpu_bench.py --check-train RUN_DIR --steps 30 --resumed-from 20

On a CPU (``--device cpu``) it runs as a smoke test: pass a small ``--preset``/``--size``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

from lcvae.models.lcvae import LCVAE
from lcvae.models.presets import get_preset


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of ``a`` against ``b`` for signals in [-1, 1] (peak-to-peak 2)."""
    mse = (a.float() - b.float()).square().mean().item()
    return math.inf if mse == 0 else 10 * math.log10(4.0 / mse)


def _model(preset: str, device: torch.device, dtype: torch.dtype = torch.float32) -> LCVAE:
    torch.manual_seed(0)
    return LCVAE(get_preset(preset)).eval().to(device=device, dtype=dtype)


def _video(frames: int, size: int, device: torch.device) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return (torch.rand(1, 3, frames, size, size, generator=g) * 2 - 1).to(device)


def checks(device: torch.device, compile_too: bool) -> dict:
    """Correctness on the device with the tiny causal LC-VAE (33 frames of 64x64)."""
    out: dict = {}
    x = _video(33, 64, device)
    tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        with torch.no_grad():
            cpu = _model("lcvae-tiny", torch.device("cpu")).reconstruct(x.cpu())
            model = _model("lcvae-tiny", device)
            whole = model.reconstruct(x)
            out["fp32_vs_cpu_max_abs"] = float((whole.cpu() - cpu).abs().max())
            z = model.diffusion_latent(x)
            chunked = model.decode_latent(z, chunk=2)
            out["chunked_vs_whole_max_abs"] = float((chunked - model.decode_latent(z)).abs().max())
            half = _model("lcvae-tiny", device, torch.bfloat16).reconstruct(x.bfloat16())
            out["bf16_psnr_vs_fp32_tiny"] = round(_psnr(half, whole), 2)
            if device.type == "cuda":  # fp16 convolutions on a CPU are correct but take minutes
                half = _model("lcvae-tiny", device, torch.float16).reconstruct(x.half())
                out["fp16_psnr_vs_fp32_tiny"] = round(_psnr(half, whole), 2)
            if compile_too:
                t0 = time.perf_counter()
                got = torch.compile(model.diffusion_latent, fullgraph=True)(x)
                dec = torch.compile(model.decode_latent, fullgraph=True)(z)
                out["compile_s"] = round(time.perf_counter() - t0, 1)
                out["compiled_encode_max_abs"] = float((got - z).abs().max())
                out["compiled_decode_max_abs"] = float((dec - model.decode_latent(z)).abs().max())
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32
    return out


def timings(preset: str, frames: int, size: int, repeats: int, device: torch.device) -> dict:
    """Encode and decode seconds (minimum over repeats) in fp32 and bf16, and bf16's PSNR against fp32."""
    out: dict = {"tf32": torch.backends.cudnn.allow_tf32}
    x = _video(frames, size, device)
    recon = {}
    for name, dtype in _dtypes(device):
        model = _model(preset, device, dtype)
        xi = x.to(dtype)
        with torch.no_grad():
            recon[name] = model.decode_latent(model.diffusion_latent(xi))  # warm-up (kernel selection)
            enc, dec = [], []
            for _ in range(repeats):
                _sync(device)
                t0 = time.perf_counter()
                z = model.diffusion_latent(xi)
                _sync(device)
                t1 = time.perf_counter()
                model.decode_latent(z)
                _sync(device)
                enc.append(t1 - t0)
                dec.append(time.perf_counter() - t1)
        out[name] = {
            "encode_s": round(min(enc), 4),
            "decode_s": round(min(dec), 4),
            "finite": bool(torch.isfinite(recon[name]).all()),
        }
        del model
    for name in recon:
        if name != "fp32":
            out[f"{name}_psnr_vs_fp32"] = round(_psnr(recon[name], recon["fp32"]), 2)
    return out


def _dtypes(device: torch.device) -> list[tuple[str, torch.dtype]]:
    """fp32, bf16, and fp16 where its convolutions are fast (not on a CPU)."""
    return [
        ("fp32", torch.float32),
        ("bf16", torch.bfloat16),
        *([("fp16", torch.float16)] if device.type == "cuda" else []),
    ]


def peak_memory(preset: str, frames: int, size: int, device: torch.device) -> dict:
    """Peak allocated GiB above the model's own weights for one encode (whole, and chunked by 16 frames)."""
    if device.type != "cuda":
        return {"skipped": "peak memory is measured with torch.cuda statistics"}
    out: dict = {}
    x = _video(frames, size, device)
    for name, dtype in _dtypes(device):
        model = _model(preset, device, dtype)
        xi = x.to(dtype)
        for mode, chunk in (("encode", None), ("encode_chunk16", 16)):
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
            base = torch.cuda.memory_allocated(device)
            with torch.no_grad():
                model.encode(xi, chunk=chunk).mode()
            torch.cuda.synchronize(device)
            out[f"{name}_{mode}_gib"] = round((torch.cuda.max_memory_allocated(device) - base) / 2**30, 3)
        del model
        torch.cuda.empty_cache()
    return out


def check_train(run_dir: Path, steps: int, resumed_from: int, train_log: Path | None) -> list[str]:
    """Problems with a run folder that trained to ``resumed_from`` steps, then resumed to ``steps``
    (``train_log``: the runs' captured output, which must say that the second run resumed)."""
    failed = []
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    # every number a step row logs (total, l1, kl, perceptual, wavelet, gan, d_total, grad norms...)
    losses = [
        (r["step"], k, v)
        for r in rows
        if "step" in r
        for k, v in r.items()
        if k not in ("step", "time", "lr") and isinstance(v, (int, float)) and not isinstance(v, bool)
    ]
    bad = [(st, k, v) for st, k, v in losses if not math.isfinite(v)]
    if not any("total" in r for r in rows):
        failed.append("metrics.jsonl has no 'total' loss rows")
    if bad:
        failed.append(f"non-finite losses: {bad[:5]}")
    last = max((r["step"] for r in rows if "step" in r), default=0)
    if last != steps:
        failed.append(f"the run ended at step {last}, expected {steps}")
    ckpts = sorted(p.name for p in run_dir.rglob("step_*") if p.is_dir())
    if f"step_{resumed_from:09d}" not in ckpts or f"step_{steps:09d}" not in ckpts:
        failed.append(f"checkpoints {ckpts} lack step {resumed_from} or {steps}")
    resumed = None
    if train_log is not None:
        resumed = (
            "resumed from" in (text := train_log.read_text(errors="replace")) and f"at step {resumed_from}" in text
        )
        if not resumed:
            failed.append(f"{train_log} does not say the run resumed at step {resumed_from}")
    print(
        json.dumps(
            {
                "train": {
                    "rows": len(rows),
                    "loss_values": len(losses),
                    "last_step": last,
                    "checkpoints": ckpts,
                    "resume_logged": resumed,
                }
            }
        )
    )
    return failed


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--preset", default="wfvae-l-16")
    p.add_argument("--frames", type=int, default=33)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--mem-size", type=int, default=512)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--skip-compile", action="store_true")
    p.add_argument("--check-train", type=Path, help="check this training run folder instead of benchmarking")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--resumed-from", type=int, default=20)
    p.add_argument("--train-log", type=Path, help="with --check-train: the training runs' output")
    args = p.parse_args()
    if args.check_train is not None:
        failed = check_train(args.check_train, args.steps, args.resumed_from, args.train_log)
        print(json.dumps({"failed": failed}))
        return 1 if failed else 0
    device = torch.device(args.device)
    result: dict = {
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
    }
    failed = []
    result["checks"] = checks(device, not args.skip_compile)
    c = result["checks"]
    if c["fp32_vs_cpu_max_abs"] > 1e-3:
        failed.append("fp32 output differs from the CPU's")
    if c["chunked_vs_whole_max_abs"] > 1e-4:
        failed.append("chunked decode differs from whole decode")
    if c["bf16_psnr_vs_fp32_tiny"] < 40:
        failed.append("bf16 PSNR against fp32 below 40 dB")
    if c.get("fp16_psnr_vs_fp32_tiny", math.inf) < 40:
        failed.append("fp16 PSNR against fp32 below 40 dB")
    if max(c.get("compiled_encode_max_abs", 0.0), c.get("compiled_decode_max_abs", 0.0)) > 1e-4:
        failed.append("compiled output differs from eager")
    print(json.dumps({"checks": c}), flush=True)  # partial results survive a later crash or timeout
    result["timings"] = timings(args.preset, args.frames, args.size, args.repeats, device)
    print(json.dumps({"timings": result["timings"]}), flush=True)
    result["peak_memory"] = peak_memory(args.preset, args.frames, args.mem_size, device)
    result["failed"] = failed
    print(json.dumps(result, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
