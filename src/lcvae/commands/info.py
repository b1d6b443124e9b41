"""lcvae info: sizes, frame rule and latent shapes of a preset or checkpoint."""

from __future__ import annotations

import argparse
import json

NAME = "info"
HELP = "sizes, frame rule and latent shapes of a preset or checkpoint"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", nargs="?", help="preset name or checkpoint folder")
    p.add_argument("--list", action="store_true", help="list the presets")
    p.add_argument("--frames", type=int, help="input frames for the latent shape (default: one group)")
    p.add_argument("--size", type=int, nargs=2, default=[256, 256], metavar=("H", "W"))
    p.add_argument("--json", action="store_true", help="print JSON")


def run(args: argparse.Namespace) -> int:
    from lcvae.inference import model_info
    from lcvae.models.presets import DESCRIPTIONS, PRESETS

    if args.list or not args.model:
        width = max(map(len, PRESETS))
        for name in PRESETS:
            print(f"{name:<{width}}  {DESCRIPTIONS[name]}")
        return 0
    info = model_info(args.model, args.frames, *args.size)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    comp = info["compression"]
    print(f"model          {info['source']} ({info['backbone']} backbone)")
    print(
        f"parameters     {info['params_m']:.2f} M (encoder {info['encoder_params_m']:.2f} M, decoder {info['decoder_params_m']:.2f} M)"
    )
    print(f"temporal       {'causal' if info['causal'] else 'non-causal'}; input {info['frame_rule']}")
    print(f"latent         {info['latent_channels']} channels")
    if comp is None:
        print(f"compression    none (plain {info['backbone']} backbone)")
    else:
        print(
            f"compression    Multi-WT, mask '{comp['mask']}' keeps {comp['kept']}/{comp['of']} coefficient channels"
            f"{' (adaptive top-k)' if comp['adaptive'] else ''}"
        )
    print(f"diffusion      {info['diffusion_channels']} channels{' (normalised)' if info['normalised'] else ''}")
    print(
        f"for input      {tuple(info['input'])}: latent {tuple(info['latent_shape'])}, diffusion latent {tuple(info['diffusion_shape'])}"
    )
    return 0
