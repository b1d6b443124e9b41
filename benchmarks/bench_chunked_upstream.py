"""Chunked (causal cache) encode + decode against upstream WF-VAE's own: time and peak memory, as JSON.

Both sides run the same random WF-VAE-L weights (upstream's model, built from its source and saved in
its own folder layout, then loaded by ``lcvae.models.io.from_pretrained``) on the same video, with
upstream's chunking (``enable_tiling``: the first frame alone, then ``--enc-chunk`` frames into the
encoder and ``--dec-chunk`` latent frames into the decoder; by default the sizes upstream's
``_auto_select_t_chunk`` picks, 4 and 2, for every length here). Both return the whole decoded video.

Method. Every (implementation, length) case runs in a fresh process, so its memory is its own. Peak
memory is the process's peak resident set (Linux ``VmHWM``, reset through ``/proc/self/clear_refs``
after loading, whose own peak holds the weights twice) over the first, cold encode + decode, minus
its resident size just before it (weights and input video loaded: "peak_mb"), and that peak itself
("peak_total_mb"). Upstream's loader may leave weights in the page cache of a memory-mapped file, to
be paged in during the run, so compare totals when the bases differ. With glibc's mmap threshold at
64 KiB every large tensor is its own mapping, unmapped when freed, so the resident peak follows the
live tensors rather than the allocator's high-water mark. Time is the minimum over
``--repeats`` warm runs after it (the cold run when ``--repeats 0``). Cases run in order, not in
parallel; the JSON lists every time, so drift on a shared machine shows.

Upstream is not part of this project: export its source (PKU-YuanGroup/WF-VAE, commit d858bee) and give
the folder holding ``causalvideovae/`` and ``examples/``; it needs ``einops`` (and ``diffusers``, which
the ``diffusers`` extra installs), e.g. ``pip install --target /tmp/upstream-deps einops``:

    git --git-dir=<mirror> archive HEAD causalvideovae examples | tar -x -C /tmp/wfvae-upstream
    python benchmarks/bench_chunked_upstream.py --upstream /tmp/wfvae-upstream --pythonpath /tmp/upstream-deps \\
        [--frames 33 65 129 257] [--size 128] [--threads 2] [--repeats 1] [--impls upstream ours ours_plain]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

# Each case: argv = impl, model folder, frames, size, threads, repeats, enc_chunk, dec_chunk, output path.
CASE = r"""
import gc, json, sys, time
import torch
impl, folder, frames, size, threads, repeats, enc_chunk, dec_chunk, out_path = sys.argv[1:10]
frames, size, threads, repeats = int(frames), int(size), int(threads), int(repeats)
enc_chunk, dec_chunk = int(enc_chunk), int(dec_chunk)
torch.set_num_threads(threads)

def status_kb(field):  # VmRSS: resident now; VmHWM: peak resident since the last reset
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))

def reset_peak():  # Linux: the peak restarts from the current resident size
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")

if impl == "upstream":
    from causalvideovae.model.vae.modeling_wfvae import WFVAEModel
    model = WFVAEModel.from_pretrained(folder).eval()
    model.enable_tiling(True)
    model.temporal_size = frames  # fixes the chunk sizes below instead of upstream's automatic choice
    model.t_chunk_enc, model.t_chunk_dec = enc_chunk, dec_chunk

    def run(x):
        return model.decode(model.encode(x).latent_dist.mode()).sample
else:
    from lcvae.models import autoencoder
    from lcvae.models.io import from_pretrained
    model = from_pretrained(folder).backbone.eval()
    if impl == "ours_plain":  # the plain twin: no packed weights (every chunk reorders every weight)
        autoencoder._PACK_MIN_CHUNKS = 1 << 62

    def run(x):
        return model.decode(model.encode(x, chunk=enc_chunk).mode(), chunk=dec_chunk)

torch.manual_seed(0)
x = torch.rand(1, 3, frames, size, size) * 2 - 1
times = []
gc.collect()
with torch.no_grad():
    reset_peak()  # loading the weights peaks higher than the run (file and model copies); not counted
    base = status_kb("VmRSS")
    t0 = time.perf_counter()
    y = run(x)
    cold = time.perf_counter() - t0
    peak = status_kb("VmHWM")
    if out_path != "-":
        torch.save(y[:, :, :9].clone(), out_path)  # the first frames, to check both sides compute the same
    del y
    for _ in range(repeats):
        t0 = time.perf_counter()
        run(x)
        times.append(time.perf_counter() - t0)
print(json.dumps({"cold_s": cold, "warm_s": times, "peak_mb": (peak - base) / 1024, "peak_total_mb": peak / 1024,
                  "base_mb": base / 1024}))
"""

SETUP = r"""
import json, sys
import torch
from causalvideovae.model.vae.modeling_wfvae import WFVAEModel
config, folder = sys.argv[1:3]
torch.manual_seed(0)
model = WFVAEModel.from_config(json.load(open(config)))
with torch.no_grad():  # LayerNorm affine and conv biases away from 1 / 0, so a path that drops them shows
    for name, p in model.named_parameters():
        if name.endswith("norm.weight"):
            p.add_(0.1 * torch.randn_like(p))
        elif name.endswith("bias"):
            p.copy_(0.02 * torch.randn_like(p))
    # upstream's Haar taps (convolution weights and buffers) are rounded (0.3536); make them exact
    for name, b in [*model.named_parameters(), *model.named_buffers()]:
        if "wavelet" in name and b.is_floating_point():
            mag = b.abs()
            for exact in (2**-1.5, 0.5, 2**-0.5):
                mag = torch.where((mag - exact).abs() < 1e-3, torch.full_like(mag, exact), mag)
            b.copy_(torch.sign(b) * mag)
model.save_pretrained(folder)
"""


def _env(pythonpath: list[str]) -> dict[str, str]:
    # Large blocks straight from mmap go back to the OS when freed (see the module doc).
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    env["PYTHONPATH"] = os.pathsep.join([*pythonpath, env.get("PYTHONPATH", "")]).strip(os.pathsep)
    return env


def run_case(impl: str, folder: Path, frames: int, args: argparse.Namespace, out: Path | None) -> dict:
    path = [args.upstream, *args.pythonpath] if impl == "upstream" else []
    cmd = [sys.executable, "-c", CASE, impl, str(folder), str(frames), str(args.size), str(args.threads)]
    cmd += [str(args.repeats), str(args.enc_chunk), str(args.dec_chunk), str(out) if out else "-"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=_env(path))
    if done.returncode:
        raise RuntimeError(f"{impl} at {frames} frames failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--upstream", required=True, help="folder holding upstream's causalvideovae/ and examples/")
    ap.add_argument("--pythonpath", nargs="*", default=[], help="extra import paths for upstream (einops)")
    ap.add_argument("--config", default=None, help="upstream config (default: its examples/wfvae-large-16chn.json)")
    ap.add_argument("--frames", type=int, nargs="+", default=[33, 65, 129, 257])
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--enc-chunk", type=int, default=4)
    ap.add_argument("--dec-chunk", type=int, default=2)
    ap.add_argument(
        "--impls",
        nargs="+",
        default=["upstream", "ours"],
        choices=["upstream", "ours", "ours_plain"],
        help="ours_plain: ours without packed weights (lcvae.models.onednn.WeightPacker), to time that fast path",
    )
    args = ap.parse_args()
    config = args.config or str(Path(args.upstream) / "examples" / "wfvae-large-16chn.json")

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "wfvae-l"
        subprocess.run(
            [sys.executable, "-c", SETUP, config, str(folder)],
            check=True,
            capture_output=True,
            env=_env([args.upstream, *args.pythonpath]),
        )
        for i, frames in enumerate(args.frames):
            both = "upstream" in args.impls and "ours" in args.impls
            outs = {impl: Path(tmp) / f"{impl}.pt" for impl in ("upstream", "ours")} if i == 0 and both else {}
            case = {impl: run_case(impl, folder, frames, args, outs.get(impl)) for impl in args.impls}
            row = {"frames": frames}
            for impl, r in case.items():
                row[f"{impl}_s"] = round(min(r["warm_s"]) if r["warm_s"] else r["cold_s"], 2)
                row[f"{impl}_all_s"] = [round(t, 2) for t in [r["cold_s"], *r["warm_s"]]]
                row[f"{impl}_peak_mb"] = round(r["peak_mb"], 1)
                row[f"{impl}_peak_total_mb"] = round(r["peak_total_mb"], 1)
                row[f"{impl}_base_mb"] = round(r["base_mb"], 1)
            for impl in ("ours", "ours_plain"):
                if "upstream" in case and impl in case:
                    row[f"speedup_{impl}_over_upstream"] = round(row["upstream_s"] / row[f"{impl}_s"], 3)
            if outs:
                import torch

                a, b = torch.load(outs["ours"]), torch.load(outs["upstream"])
                row["max_abs_diff_first_9_frames"] = float((a - b).abs().max())
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)  # progress: long runs
    summary = {
        "model": "WF-VAE-L (wfvae-large-16chn), random weights, fp32",
        "size": args.size,
        "threads": args.threads,
        "chunks": f"first frame alone, then encoder {args.enc_chunk} frames, decoder {args.dec_chunk} latent frames",
        "rows": rows,
    }
    for impl in args.impls:
        peaks = [r[f"{impl}_peak_mb"] for r in rows]
        summary[f"{impl}_peak_spread"] = round(max(peaks) / min(peaks) - 1, 3)
    for impl in ("ours", "ours_plain"):
        if "upstream" in args.impls and impl in args.impls:
            summary[f"min_speedup_{impl}"] = min(r[f"speedup_{impl}_over_upstream"] for r in rows)
            summary[f"{impl}_peak_total_at_or_below_upstream"] = all(
                r[f"{impl}_peak_total_mb"] <= r["upstream_peak_total_mb"] for r in rows
            )
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
