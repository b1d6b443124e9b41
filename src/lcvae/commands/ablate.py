"""lcvae ablate: the paper's ablations as repeatable runs.

ptlc        a trained model evaluated with the paper mask applied at inference only (Table 4)
keep-ratio  the same with the 25 / 50 / 75 % masks
adaptive    channel selections of an adaptive top-k training run vs the fixed mask (Fig. 12)
subsets     models evaluated on the texture-heavy / fast-motion manifests of `lcvae subsets` (Table 7)
"""

from __future__ import annotations

import argparse

from lcvae.commands.common import add_eval_options, check_output_folder, eval_options, report_nothing_done

NAME = "ablate"
HELP = "the paper's ablations: ptlc, keep-ratio, adaptive, subsets"


def _eval_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--out", required=True, help="output folder: one evaluation folder per variant, table.json, table.md"
    )
    p.add_argument(
        "--random-weights", action="store_true", help="allow preset names (untrained weights: for trying the pipeline)"
    )
    p.add_argument("--frames", type=int, help="frames per clip (default: one length valid for every variant)")
    add_eval_options(p, samples=0)


def _sweep(p: argparse.ArgumentParser, masks: list[str]) -> None:
    p.add_argument(
        "--model", required=True, help="trained checkpoint folder (e.g. a WF-VAE), or a preset with --random-weights"
    )
    p.add_argument("--data", required=True, help="a folder of videos, a manifest, or a UCF-101 / Sky Timelapse root")
    p.add_argument("--data-format", default="auto", help="auto, folder, manifest, ucf101, sky or file")
    p.add_argument(
        "--masks",
        nargs="+",
        default=masks,
        help=f"masks applied at inference: none (the model as is), paper, keep25, keep75, reference, or a mask .json (default: {' '.join(masks)})",
    )
    p.add_argument("--name", help="method name in the table (default: the checkpoint folder's name)")
    p.add_argument(
        "--size",
        type=int,
        help="resize the short side and centre-crop to SIZE x SIZE (default: frames keep "
        "their stored size, as in lcvae eval)",
    )
    p.add_argument("--start", type=int, default=0)
    _eval_options(p)


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="ablation", required=True, metavar="ABLATION")
    _sweep(
        sub.add_parser("ptlc", help="post-training compression: the mask at inference only (Table 4)"),
        ["none", "paper"],
    )
    _sweep(
        sub.add_parser("keep-ratio", help="25 / 50 / 75 %% masks at inference"), ["none", "keep25", "paper", "keep75"]
    )
    a = sub.add_parser("adaptive", help="adaptive top-k selections vs the fixed mask over training (Fig. 12)")
    a.add_argument("run", help="training run folder (with adaptive_selection.jsonl) or the log file")
    a.add_argument("--out", required=True, help="output folder for selection.json and selection.png")
    a.add_argument(
        "--latent-channels", type=int, help="C of the VAE latent (default: from the run folder's config.json)"
    )
    a.add_argument(
        "--from-step", type=int, help="start of the late window (default: the last quarter of the logged steps)"
    )
    a.add_argument("--against", help="fixed mask to compare with (default: the one of the same size, paper for 50 %%)")
    s = sub.add_parser("subsets", help="evaluate models on the texture-heavy / fast-motion subsets (Table 7)")
    s.add_argument("--models", nargs="+", required=True, help="checkpoint folders (or presets with --random-weights)")
    s.add_argument("--names", nargs="+", help="one method name per model")
    s.add_argument("--subsets", required=True, help="the --out folder of `lcvae subsets`")
    s.add_argument("--size", type=int, help="resolution (default: the one the clips were scored at)")
    _eval_options(s)


def run(args: argparse.Namespace) -> int:
    from lcvae.ablations.evaluations import evaluate_subsets, mask_sweep
    from lcvae.ablations.selection import adaptive_report
    from lcvae.comparison import format_markdown

    check_output_folder(args.out)
    if args.ablation == "adaptive":
        s = adaptive_report(args.run, args.out, args.latent_channels, args.from_step, args.against)
        print(f"{len(s['steps'])} logged steps, top-{s['kept']} of {32 * s['latent_channels']} channels")
        print(
            f"overlap with the {s['against']} mask: last step {100 * s['final_overlap']:.1f}%, steps >= "
            f"{s['late_from_step']} mean {100 * s['late_mean_overlap']:.1f}%, their consensus {100 * s['consensus_overlap']:.1f}%"
        )
        print(f"wrote {args.out}/selection.json and {args.out}/selection.png")
        return 0
    if args.ablation == "subsets":
        table = evaluate_subsets(
            args.models,
            args.subsets,
            args.out,
            eval_options(args),
            names=args.names,
            frames=args.frames,
            size=args.size,
            random_weights=args.random_weights,
        )
    else:
        table = mask_sweep(
            args.model,
            args.data,
            args.out,
            args.masks,
            eval_options(args),
            name=args.name,
            frames=args.frames,
            size=args.size or None,
            start_frame=args.start,
            data_format=args.data_format,
            random_weights=args.random_weights,
        )
    print(format_markdown(table), end="")
    print(f"wrote {args.out}/table.json and {args.out}/table.md")
    used, skipped = clips_in_table(table)
    return report_nothing_done(used, skipped, "clips evaluated in any row")


def clips_in_table(table: dict) -> tuple[int, list[tuple[str, str]]]:
    """(clips evaluated over every report behind ``table``'s cells, the skipped (path, reason), each path once)."""
    import json
    from pathlib import Path

    used, skipped = 0, {}
    for row in table["rows"]:
        for source in row["sources"].values():
            clips = json.loads(Path(source).read_text(encoding="utf-8"))["clips"]
            used += clips["used"]
            skipped.update((s["path"], s["reason"]) for s in clips["skipped_reasons"])
    return used, list(skipped.items())
