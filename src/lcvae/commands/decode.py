"""lcvae decode: latent file -> video file."""

from __future__ import annotations

import argparse
from pathlib import Path

from lcvae.commands.common import add_model_args, run_options

NAME = "decode"
HELP = "latent file (from `lcvae encode`) -> video file"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", help="latent .safetensors written by `lcvae encode`")
    p.add_argument("output", help="video file (.mp4, .mkv, .mov or .avi)")
    p.add_argument("--fps", type=float, help="output frame rate (default: the source's)")
    add_model_args(p, video_in=False)


def check_latent_file(path: str | Path) -> None:
    """Raise a ValueError saying what ``path`` is when it is not a latent file from ``encode``.

    A latent file is safetensors holding one tensor ``latent`` (1, C, F, h, w); text, an empty
    file and a model's weights are refused here, before a model is loaded.
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"latent file not found: {path}"
            if not path.exists()
            else f"{path} is a directory; expected a latent .safetensors file"
        )
    if path.stat().st_size == 0:
        raise ValueError(f"{path} is empty; expected a latent .safetensors file written by `lcvae encode`")
    try:
        with safe_open(str(path), "pt") as f:
            names = list(f.keys())
            shape = f.get_slice("latent").get_shape() if "latent" in names else None
    except SafetensorError as err:
        raise ValueError(
            f"{path} is not a safetensors file ({err}); expected a latent file written by `lcvae encode`"
        ) from None
    if shape is None:
        kind = "model weights" if any("." in n for n in names) else "tensors"
        raise ValueError(
            f"{path} holds {len(names)} {kind} (e.g. {names[0]!r}) and no 'latent' "
            f"tensor; decode takes a latent file written by `lcvae encode`"
            if names
            else f"{path} holds no tensors; expected a latent file"
        )
    if len(shape) != 5 or shape[0] != 1:
        raise ValueError(
            f"{path}: 'latent' has shape {tuple(shape)}; expected (1, C, F, h, w) as written by `lcvae encode`"
        )


def run(args: argparse.Namespace) -> int:
    from lcvae.data.video import check_output_path
    from lcvae.inference import decode_file, load_model

    check_latent_file(args.input)
    check_output_path(args.output)
    model = load_model(args.model, args.device, args.random_weights, args.dtype)
    out = decode_file(model, args.input, args.output, run_options(args), args.fps)
    size = [out["frames"], out["height"], out["width"]]
    note = (
        ""
        if out["decoded"] == size
        else (
            f" (cropped back from the padded {out['decoded'][0]} frames "
            f"{out['decoded'][2]}x{out['decoded'][1]}, as encode --pad recorded)"
        )
    )
    print(f"wrote {args.output}: {out['frames']} frames {out['width']}x{out['height']}{note}")
    return 0
