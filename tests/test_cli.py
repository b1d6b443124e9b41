"""The lcvae command: info numbers, file round trips, and errors that say what to do."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lcvae.cli import main
from lcvae.data.video import probe, read_video, write_video
from lcvae.models.io import save_pretrained
from lcvae.models.lcvae import LCVAE
from lcvae.models.presets import get_preset


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> str:
    rng = np.random.default_rng(0)
    frames = np.zeros((40, 32, 56, 3), np.uint8)  # 56 is not a multiple of 16: --fit crop makes it 48
    for t in range(40):
        frames[t] = np.clip(rng.normal(128, 40, (32, 56, 3)), 0, 255)
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    write_video(path, frames, fps=12, codec="libx264rgb", pix_fmt="rgb24", qp=0)
    return str(path)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("ckpt") / "tiny"
    save_pretrained(LCVAE(get_preset("lcvae-tiny")), folder)
    return str(folder)


def test_info_reports_paper_numbers(capsys):
    assert main(["info", "wfvae-l-16", "--frames", "33", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["params_m"] == 317.08 and info["encoder_params_m"] == 84.59 and info["decoder_params_m"] == 232.49
    assert info["latent_shape"] == [16, 9, 32, 32]
    assert main(["info", "lcvae-chn8", "--frames", "32"]) == 0
    out = capsys.readouterr().out
    assert "315.46 M" in out and "diffusion latent (8, 8, 32, 32)" in out and "256/512" in out
    assert main(["info", "--list"]) == 0
    assert "lcvae-chn16-causal" in capsys.readouterr().out


def test_reconstruct_writes_the_clip_and_side_by_side_doubles_width(clip, checkpoint, tmp_path):
    out = tmp_path / "rec.mp4"
    assert (
        main(
            ["reconstruct", clip, str(out), "--model", checkpoint, "--frames", "33", "--fit", "crop", "--side-by-side"]
        )
        == 0
    )
    info = probe(out)
    assert (info.frames, info.width, info.height) == (33, 2 * 48, 32)


def test_encode_then_decode_equals_reconstruct(clip, checkpoint, tmp_path):
    lat, dec, rec = tmp_path / "z.safetensors", tmp_path / "dec.mp4", tmp_path / "rec.mp4"
    assert main(["encode", clip, str(lat), "--model", checkpoint, "--trim", "--fit", "crop"]) == 0
    assert main(["decode", str(lat), str(dec), "--model", checkpoint, "--lossless"]) == 0
    assert main(["reconstruct", clip, str(rec), "--model", checkpoint, "--trim", "--fit", "crop", "--lossless"]) == 0
    a, b = read_video(dec).int(), read_video(rec).int()
    assert a.shape == (33, 32, 48, 3) and (a - b).abs().max() <= 1  # same frames up to 8-bit rounding


def test_errors_exit_2_with_a_message(clip, checkpoint, tmp_path, capsys):
    assert main(["reconstruct", clip, str(tmp_path / "x.mp4"), "--model", checkpoint, "--frames", "30"]) == 2
    assert "got 30; use 1 or 33" in capsys.readouterr().err
    assert main(["reconstruct", clip, str(tmp_path / "x.mp4"), "--model", "lcvae-tiny", "--frames", "33"]) == 2
    assert "--random-weights" in capsys.readouterr().err
    assert main(["reconstruct", clip, str(tmp_path / "x.mp4"), "--model", checkpoint, "--frames", "33"]) == 2
    assert "--fit crop" in capsys.readouterr().err
    assert main(["info", "lcvae-chn9"]) == 2
    assert "did you mean" in capsys.readouterr().err


def test_dtype_is_the_models_dtype_and_bf16_stays_close_to_fp32(clip, checkpoint, tmp_path):
    from lcvae.inference import load_model

    assert next(load_model(checkpoint, dtype="bf16").parameters()).dtype == torch.bfloat16
    outs = {}
    for dtype in ("fp32", "bf16"):
        outs[dtype] = tmp_path / f"{dtype}.mp4"
        assert (
            main(
                [
                    "reconstruct",
                    clip,
                    str(outs[dtype]),
                    "--model",
                    checkpoint,
                    "--frames",
                    "33",
                    "--fit",
                    "crop",
                    "--lossless",
                    "--dtype",
                    dtype,
                    "--no-progress",
                ]
            )
            == 0
        )
    a, b = read_video(outs["fp32"]).double(), read_video(outs["bf16"]).double()
    psnr = 10 * np.log10(255**2 / ((a - b) ** 2).mean().item())
    assert 35 < psnr < 100  # close, and not the fp32 run again


def test_encode_help_lists_only_the_options_that_apply_to_encoding(capsys):
    with pytest.raises(SystemExit):
        main(["encode", "--help"])
    text = capsys.readouterr().out
    assert "--chunk" in text and "--pad" in text and "--dtype" in text
    assert "--decode-chunk" not in text and "--lossless" not in text
    with pytest.raises(SystemExit):
        main(["decode", "--help"])
    text = capsys.readouterr().out
    assert "--decode-chunk" in text and "--pad" not in text and "--trim" not in text


def test_dataset_commands_exit_1_with_the_reasons_when_every_input_was_skipped(checkpoint, tmp_path, capsys):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "noise.mp4").write_bytes(np.random.default_rng(0).bytes(3000))
    (bad / "empty.mp4").write_bytes(b"")
    assert (
        main(
            [
                "ablate",
                "ptlc",
                "--model",
                checkpoint,
                "--data",
                str(bad),
                "--out",
                str(tmp_path / "abl"),
                "--lpips",
                "none",
                "--masks",
                "paper",
                "--no-progress",
            ]
        )
        == 1
    )
    err = capsys.readouterr().err
    assert "no clips evaluated in any row: every input was skipped (2)" in err
    assert f"{bad / 'noise.mp4'}: " in err and f"{bad / 'empty.mp4'}: " in err
    # the others that read a dataset refuse with exit 2 and a message
    assert (
        main(
            [
                "analyze",
                "--model",
                checkpoint,
                "--data",
                str(bad),
                "--out",
                str(tmp_path / "an"),
                "--no-figures",
                "--no-progress",
            ]
        )
        == 2
    )
    assert "no latents were analysed" in capsys.readouterr().err
    assert main(["subsets", "--data", str(bad), "--out", str(tmp_path / "sub"), "--top-k", "1", "--no-progress"]) == 2
    assert "no scorable clips" in capsys.readouterr().err
    assert main(["fvd", str(bad), str(bad), "--i3d-random", "--no-progress"]) == 2
    assert "gave 0 (2 skipped" in capsys.readouterr().err
