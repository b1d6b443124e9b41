"""Time the demo (``lcvae quickstart``) from a fresh output folder and print one JSON object.

Run it on a quiet machine (nothing else using the cores): the issue's bar is <= 10 minutes on 2 CPU
cores, e.g. ``taskset -c 0,1 .venv/bin/python benchmarks/bench_quickstart.py``. The demo's numbers do
not depend on the load (a step budget), but its wall time does, so a busy machine gives no verdict.

Printed: wall seconds of the whole command and its process CPU seconds (user + system, children
included), the cores it could use, each run's training seconds per step (from the study's timing
summary), and the held-out table. ``--keep DIR`` writes the outputs there instead of a temp folder;
extra arguments are passed to ``lcvae quickstart`` (e.g. ``steps=20`` for a quick look).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", help="output folder to keep (default: a temporary folder)")
    parser.add_argument("overrides", nargs="*", help="passed to lcvae quickstart, e.g. steps=20")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.keep or Path(tmp) / "quickstart")
        if (out / "results.json").exists():
            sys.exit(f"{out} already holds a finished demo (it would resume, not run); give an empty folder")
        cmd = [sys.executable, "-m", "lcvae", "quickstart", "--out", str(out), *args.overrides]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - t0
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        results = json.loads((out / "results.json").read_text())
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(
        json.dumps(
            {
                "wall_s": round(wall, 1),
                "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
                "cores": cores,
                "load_average_after": os.getloadavg(),
                "steps": results["steps"],
                "seeds": results["seeds"],
                "seconds_per_step": {run: t["seconds_per_step"] for run, t in results["timing"].items()},
                "table": {
                    name: {k: m[k] for k in ("psnr", "psnr_std", "ssim", "ssim_std", "steps")}
                    for name, m in results["models"].items()
                },
                "claims": {c["claim"]: c["verdict"] for c in results["claims"]},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
