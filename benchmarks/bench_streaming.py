"""Chunked (streaming) vs whole-video causal inference: peak memory and time, as JSON.

Each measurement runs in a fresh subprocess so peak RSS belongs to that case alone (Linux ``VmHWM``,
reset through ``/proc/self/clear_refs`` after set-up and warm-up). The streaming
path encodes and decodes chunk by chunk and drops decoded frames as a writer would; the whole path
holds every activation of the clip. Peak memory is reported above the process's resident size
just before inference (model and input already allocated).

    python benchmarks/bench_streaming.py [--size 128] [--frames 33 65 129]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

CASE = r"""
import json, sys, time, torch
from lcvae.models.autoencoder import WFVAE
from lcvae.models.wfvae import WFVAEConfig
torch.set_num_threads(2)
frames, size, mode = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
torch.manual_seed(0)
model = WFVAE(WFVAEConfig(base_channels=32, encoder_energy_flow=16, decoder_energy_flow=16, latent_channels=4)).eval()
x = torch.randn(1, 3, frames, size, size)
def status_kb(field):  # VmRSS: resident now; VmHWM: peak resident since the last reset
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))
with torch.no_grad():
    model.decode(model.encode(x[:, :, :5]).mode())  # warm up kernels
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # the peak restarts here: set-up and warm-up are not counted
    base = status_kb("VmRSS")
    times = []
    for _ in range(int(sys.argv[4])):  # the minimum over repeats is robust to a busy machine
        t0 = time.perf_counter()
        if mode == "whole":
            y = model.decode(model.encode(x).mode())
            n = y.shape[2]
            del y
        else:
            z = torch.cat([o.moments[:, :4] for o in model.iter_encode(x, 16)], dim=2)
            n = sum(piece.shape[2] for piece in model.iter_decode(z, 4))
        times.append(time.perf_counter() - t0)
peak = status_kb("VmHWM")
print(json.dumps({"frames_out": n, "seconds": min(times), "peak_mb": (peak - base) / 1024}))
"""


def run(frames: int, size: int, mode: str, repeats: int) -> dict:
    cmd = [sys.executable, "-c", CASE, str(frames), str(size), mode, str(repeats)]
    # Large blocks straight from mmap go back to the OS when freed, so peak RSS tracks peak live
    # tensor memory instead of glibc's fragmentation high-water mark.
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--frames", type=int, nargs="+", default=[33, 65, 129])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    rows = []
    for frames in args.frames:
        whole, chunked = run(frames, args.size, "whole", args.repeats), run(frames, args.size, "chunked", args.repeats)
        rows.append(
            {
                "frames": frames,
                "whole_s": round(whole["seconds"], 3),
                "chunked_s": round(chunked["seconds"], 3),
                "time_ratio_chunked_over_whole": round(chunked["seconds"] / whole["seconds"], 3),
                "whole_peak_mb": round(whole["peak_mb"], 1),
                "chunked_peak_mb": round(chunked["peak_mb"], 1),
            }
        )
    peaks = [r["chunked_peak_mb"] for r in rows]
    summary = {
        "preset": "tiny causal WF-VAE (B=32)",
        "size": args.size,
        "chunks": "encoder 16 frames, decoder 4 latent frames",
        "rows": rows,
        "chunked_peak_spread": round(max(peaks) / min(peaks) - 1, 3),
        "max_time_ratio": max(r["time_ratio_chunked_over_whole"] for r in rows),
    }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
