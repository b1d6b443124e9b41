"""The ``lcvae`` command. Parsing only: each subcommand calls one library function."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def command(name: str):
    def register(fn):
        COMMANDS[name] = fn
        return fn

    return register


def _run_options(args: argparse.Namespace):
    from lcvae.inference import RunOptions

    return RunOptions(device=args.device, dtype=args.dtype, chunk=args.chunk, decode_chunk=args.decode_chunk, tile=args.tile)


def _add_model_args(p: argparse.ArgumentParser, video_in: bool = True) -> None:
    p.add_argument("--model", required=True, help="checkpoint folder (ours or the official WF-VAE), or a preset with --random-weights")
    p.add_argument("--random-weights", action="store_true", help="allow a preset name (untrained weights: for trying the pipeline)")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"], help="bf16 runs under autocast")
    p.add_argument("--decode-chunk", type=int, help="decode this many latent frames at a time (causal models)")
    p.add_argument("--tile", type=int, help="process frames in spatial tiles of this many pixels")
    if video_in:
        p.add_argument("--chunk", type=int, help="encode this many frames at a time (a multiple of 4; causal models)")
        p.add_argument("--start", type=int, default=0, help="first frame to read")
        p.add_argument("--frames", type=int, help="number of frames to read (default: all)")
        p.add_argument("--fit", default="error", choices=["error", "crop", "resize"], help="make frames a valid size (default: refuse)")
        p.add_argument("--trim", action="store_true", help="drop trailing frames to the nearest valid count")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lcvae", description="LC-VAE: latent-compressed video VAE")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("info", help="sizes, frame rule and latent shapes of a preset or checkpoint")
    p.add_argument("model", nargs="?", help="preset name or checkpoint folder")
    p.add_argument("--list", action="store_true", help="list the presets")
    p.add_argument("--frames", type=int, help="input frames for the latent shape (default: one group)")
    p.add_argument("--size", type=int, nargs=2, default=[256, 256], metavar=("H", "W"))
    p.add_argument("--json", action="store_true", help="print JSON")

    p = sub.add_parser("reconstruct", help="encode and decode a video file")
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--side-by-side", action="store_true", help="write input and reconstruction side by side")
    _add_model_args(p)

    p = sub.add_parser("encode", help="video file -> latent file (safetensors)")
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--raw", action="store_true", help="store the backbone latent instead of the diffusion latent")
    _add_model_args(p)

    p = sub.add_parser("decode", help="latent file -> video file")
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--fps", type=float, help="output frame rate (default: the source's)")
    _add_model_args(p, video_in=False)

    p = sub.add_parser("degrade", help="re-encode a video with H.264 at constant QP (data-quality test)")
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--qp", type=int, default=30)
    return parser


@command("info")
def _info(args: argparse.Namespace) -> int:
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
    print(f"model          {info['source']}")
    print(f"parameters     {info['params_m']:.2f} M (encoder {info['encoder_params_m']:.2f} M, decoder {info['decoder_params_m']:.2f} M)")
    print(f"temporal       {'causal' if info['causal'] else 'non-causal'}; input {info['frame_rule']}")
    print(f"latent         {info['latent_channels']} channels")
    if comp is None:
        print("compression    none (plain WF-VAE)")
    else:
        print(f"compression    Multi-WT, mask '{comp['mask']}' keeps {comp['kept']}/{comp['of']} coefficient channels"
              f"{' (adaptive top-k)' if comp['adaptive'] else ''}")
    print(f"diffusion      {info['diffusion_channels']} channels{' (normalised)' if info['normalised'] else ''}")
    print(f"for input      {tuple(info['input'])}: latent {tuple(info['latent_shape'])}, diffusion latent {tuple(info['diffusion_shape'])}")
    return 0


@command("reconstruct")
def _reconstruct(args: argparse.Namespace) -> int:
    from lcvae.inference import load_model, reconstruct_file

    model = load_model(args.model, args.device, args.random_weights)
    stats = reconstruct_file(model, args.input, args.output, _run_options(args), args.side_by_side,
                             args.start, args.frames, args.fit, args.trim)
    print(f"wrote {args.output}: {stats['frames']} frames {stats['width']}x{stats['height']}, PSNR {stats['psnr']:.2f} dB")
    return 0


@command("encode")
def _encode(args: argparse.Namespace) -> int:
    from lcvae.inference import encode_file, load_model

    model = load_model(args.model, args.device, args.random_weights)
    shape = encode_file(model, args.input, args.output, _run_options(args), args.raw, args.start, args.frames, args.fit, args.trim)
    print(f"wrote {args.output}: {'raw' if args.raw else 'diffusion'} latent {shape}")
    return 0


@command("decode")
def _decode(args: argparse.Namespace) -> int:
    from lcvae.inference import decode_file, load_model

    args.chunk = None
    model = load_model(args.model, args.device, args.random_weights)
    frames = decode_file(model, args.input, args.output, _run_options(args), args.fps)
    print(f"wrote {args.output}: {frames} frames")
    return 0


@command("degrade")
def _degrade(args: argparse.Namespace) -> int:
    from lcvae.data.degrade import degrade_video

    degrade_video(args.input, args.output, qp=args.qp)
    print(f"wrote {args.output} (libx264, QP {args.qp})")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return COMMANDS[args.command](args)
    except (ValueError, FileNotFoundError) as err:
        print(f"lcvae {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
