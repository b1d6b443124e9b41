"""Pad-and-crop-back: edge replication by hand, and files of invalid length and size round trip to
exactly their own (T, H, W) through reconstruct, and through encode + decode."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open

from lcvae.cli import main
from lcvae.data.video import probe, read_video, write_video
from lcvae.inference import RunOptions, crop_video, encode_file, load_model, model_input, pad_video
from lcvae.models.io import save_pretrained
from lcvae.models.lcvae import LCVAE
from lcvae.models.presets import get_preset

pytestmark = pytest.mark.usefixtures("one_thread")


def test_pad_video_repeats_the_last_frame_row_and_column():
    x = torch.arange(2 * 3 * 4, dtype=torch.float32).view(1, 1, 2, 3, 4)  # (B, C, T=2, H=3, W=4)
    y = pad_video(x, 2, 1, 2)
    assert y.shape == (1, 1, 4, 4, 6)
    # by hand: out[t, h, w] = x[min(t, 1), min(h, 2), min(w, 3)]
    v = x[0, 0].numpy()
    expect = np.array([[[v[min(t, 1), min(h, 2), min(w, 3)] for w in range(6)] for h in range(4)] for t in range(4)])
    assert np.array_equal(y[0, 0].numpy(), expect)
    assert y[0, 0, 3, 3, 5] == 23 and y[0, 0, 2, 0, 0] == 12 and y[0, 0, 0, 3, 0] == 8
    assert torch.equal(crop_video(y, 2, 3, 4), x)
    assert pad_video(x, 0, 0, 0) is x
    with pytest.raises(ValueError, match=">= 0"):
        pad_video(x, -1, 0, 0)


def test_model_input_pads_to_the_next_valid_size_or_names_the_options():
    model = LCVAE(get_preset("lcvae-tiny"))  # causal, compressed: 1 + 32k frames, multiples of 16
    x = torch.zeros(1, 3, 10, 20, 40)
    y, padded = model_input(x, model, pad=True)
    assert y.shape == (1, 3, 33, 32, 48) and padded == {"frames": 23, "height": 12, "width": 8}
    with pytest.raises(ValueError, match="--pad"):
        model_input(x[:, :, :1], model, pad=False)  # 1 frame is valid, 20x40 is not
    z, none = model_input(torch.zeros(1, 3, 33, 32, 48), model, pad=True)
    assert z.shape == (1, 3, 33, 32, 48) and none == {"frames": 0, "height": 0, "width": 0}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A 10-frame 20x40 clip (valid for no causal LC-VAE size) and a tiny checkpoint."""
    root = tmp_path_factory.mktemp("pad")
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (10, 20, 40, 3), dtype=np.uint8)
    clip = root / "clip.mp4"
    write_video(clip, frames, fps=10, codec="libx264rgb", pix_fmt="rgb24", qp=0)
    torch.manual_seed(0)
    save_pretrained(LCVAE(get_preset("lcvae-tiny")), root / "tiny")
    return root, str(clip), str(root / "tiny")


def test_reconstruct_pad_returns_exactly_the_input_length_and_size(files, capsys):
    root, clip, ckpt = files
    out = root / "rec.mp4"
    assert main(["reconstruct", clip, str(out), "--model", ckpt, "--pad", "--lossless", "--no-progress"]) == 0
    info = probe(out)
    assert (info.frames, info.height, info.width) == (10, 20, 40)
    assert "padded by 23 frames and 12 rows x 8 columns (edge replication), cropped back" in capsys.readouterr().out
    # without --pad the same file is refused, naming both ways out
    assert main(["reconstruct", clip, str(out), "--model", ckpt, "--no-progress"]) == 2
    assert "--trim keeps 1, --pad pads to 33" in capsys.readouterr().err


def test_encode_pad_records_the_size_and_decode_crops_back(files, capsys):
    root, clip, ckpt = files
    latent, dec, rec = root / "z.safetensors", root / "dec.mp4", root / "rec2.mp4"
    assert main(["encode", clip, str(latent), "--model", ckpt, "--pad", "--no-progress"]) == 0
    with safe_open(str(latent), "pt") as f:
        meta = f.metadata()
        shape = f.get_slice("latent").get_shape()
    assert (meta["frames"], meta["height"], meta["width"]) == ("10", "20", "40")
    assert json.loads(meta["padded"]) == {"frames": 23, "height": 12, "width": 8}
    assert shape[3:] == [32 // 8, 48 // 8]  # the padded 32x48 frames, 8x downsampled
    assert main(["decode", str(latent), str(dec), "--model", ckpt, "--lossless", "--no-progress"]) == 0
    assert "10 frames 40x20 (cropped back from the padded 33 frames 48x32" in capsys.readouterr().out
    assert main(["reconstruct", clip, str(rec), "--model", ckpt, "--pad", "--lossless", "--no-progress"]) == 0
    a, b = read_video(dec).int(), read_video(rec).int()
    assert a.shape == (10, 20, 40, 3) and (a - b).abs().max() <= 1  # the same frames up to 8-bit rounding


def test_trim_and_pad_together_are_refused(files):
    _, clip, ckpt = files
    with pytest.raises(ValueError, match="give one of the two"):
        encode_file(load_model(ckpt), clip, "unused.safetensors", RunOptions(progress=False), trim=True, pad=True)
