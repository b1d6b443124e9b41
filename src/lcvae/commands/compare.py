"""lcvae compare: one table across evaluation runs, in the layout of the paper's tables."""

from __future__ import annotations

import argparse

NAME = "compare"
HELP = "tabulate metrics.json files of several runs (Method | Chn | PSNR SSIM LPIPS rFVD per dataset)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "runs", nargs="+", metavar="RUN", help="run folders (searched for metrics.json) or metrics.json files"
    )
    p.add_argument("--names", nargs="+", help="one method name per RUN (default: folder names)")
    p.add_argument(
        "--set", default="vs_input", help="metric set: vs_input, or vs_degraded / vs_clean for degraded runs"
    )
    p.add_argument("--out", help="write table.json and table.md into this folder (default: print only)")


def run(args: argparse.Namespace) -> int:
    from lcvae.comparison import compare_runs, format_markdown, write_comparison

    if args.out:
        table = write_comparison(args.runs, args.out, args.names, args.set)
    else:
        table = compare_runs(args.runs, args.names, args.set)
    print(format_markdown(table), end="")
    if args.out:
        print(f"wrote {args.out}/table.json and {args.out}/table.md")
    return 0
