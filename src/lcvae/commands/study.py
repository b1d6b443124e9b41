"""lcvae study: WF-VAE vs LC-VAE vs PTLC at the same diffusion-latent size, as learning curves over seeds."""

from __future__ import annotations

import argparse

NAME = "study"
HELP = (
    "the paper's equal-latent-size comparison for a step budget: learning curves over seeds, "
    "a verdict per claim, report.html"
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML (e.g. configs/study_tiny_cpu.yaml); defaults are built in")
    p.add_argument("--out", help="output folder (default outputs/study); rerunning into it resumes")
    p.add_argument("--backbone", help="backbone preset (lcvae info --list), e.g. wfvae-tiny")
    p.add_argument(
        "--channels", type=int, help="C': diffusion-latent channels of every model (LC-VAE/PTLC latents have 2C')"
    )
    p.add_argument("--steps", type=int, help="training steps of every run")
    p.add_argument("--eval-every", type=int, help="held-out evaluation every N steps")
    p.add_argument("--seeds", help="comma-separated seeds, e.g. 0,1,2")
    p.add_argument("--adaptive", action="store_true", help="also train the adaptive Top-50%% baseline (supplement D.1)")
    p.add_argument("--pretrained", help="folder of model folders (a study's models/) to start every run from")
    p.add_argument(
        "overrides", nargs="*", help="key=value overrides, e.g. train.optim.lr=1e-3 train.train.batch_size=2"
    )


def overrides_from(args: argparse.Namespace) -> list[str]:
    """The options as study config overrides (they win over --config and positional overrides)."""
    extra = [f"out_dir={args.out}"] if args.out else []
    for key, value in (
        ("backbone", args.backbone),
        ("channels", args.channels),
        ("steps", args.steps),
        ("eval_every", getattr(args, "eval_every", None)),
        ("pretrained", args.pretrained),
    ):
        if value is not None:
            extra.append(f"{key}={value}")
    if args.seeds:
        extra.append(f"seeds=[{args.seeds}]")
    return list(args.overrides) + extra


def run(args: argparse.Namespace) -> int:
    import logging

    from lcvae.commands.common import run_training
    from lcvae.study import load_study_config, run_study
    from lcvae.train.distributed import setup_logging

    cfg = load_study_config(args.config, overrides_from(args))
    if args.adaptive and "adaptive" not in cfg.models:
        cfg = load_study_config(None, [f"models={cfg.models + ['adaptive']}"], base=cfg)
    setup_logging(logging.INFO, rank=0)
    results, code = run_training(NAME, lambda: run_study(cfg))
    if results:  # not on torchrun ranks other than 0, nor after a stop
        print_summary(results, cfg.out_dir)
    return code


def print_summary(results: dict, out_dir: str) -> None:
    key = results["metric"]
    print(f"\n| model | steps | seeds | PSNR dB | SSIM | {key.upper()} |\n|---|---|---|---|---|---|")
    for m in results["models"].values():
        cells = [_cell(m, "psnr", 2), _cell(m, "ssim", 4), _cell(m, key, 4)]
        print(f"| {m['label']} | {m['steps']} | {m['seeds']} | " + " | ".join(cells) + " |")
    print()
    for claim in results["claims"]:
        print("- " + claim["sentence"])
    print(f"\nreport: {out_dir}/report.html (results.json, claims.json, models/, videos/ beside it)")


def _cell(m: dict, key: str, digits: int) -> str:
    std = m.get(f"{key}_std")
    return f"{m[key]:.{digits}f}" + (f" ± {std:.{digits}f}" if std is not None else "")
