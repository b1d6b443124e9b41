"""lcvae export (checkpoint -> pretrained folder) and lcvae latent-stats (per-channel statistics) round trips."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from lcvae.cli import main as cli_main
from lcvae.data import center_crop, read_video, to_tensor, write_video
from lcvae.models.io import from_pretrained, save_pretrained
from lcvae.models.lcvae import LCVAE
from lcvae.train.checkpoint import load_checkpoint, resolve_checkpoint
from lcvae.train.export import export_checkpoint
from lcvae.train.latent_stats import ChannelStats
from lcvae.train.train_vae import main
from lcvae.train.vae_config import ModelSection, load_train_config, resolve_model_config

SMALL = {"base_channels": 8, "encoder_energy_flow": 8, "decoder_energy_flow": 8}


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("clips")
    rng = np.random.default_rng(1)
    for k in range(3):
        base = rng.integers(40, 215, (1, 32, 32, 3))
        frames = np.clip(base + rng.normal(0, 20, (36, 32, 32, 3)).cumsum(0) * 0.3, 0, 255).astype(np.uint8)
        write_video(root / f"v{k}.mp4", frames, fps=8, codec="libx264rgb", pix_fmt="rgb24", qp=0)
    return root


@pytest.fixture(scope="module")
def run(tmp_path_factory, clips) -> Path:
    out = tmp_path_factory.mktemp("run")
    cfg = load_train_config(
        None,
        [
            "model.preset=lcvae-tiny",
            "model.backbone={base_channels: 8, encoder_energy_flow: 8, decoder_energy_flow: 8}",
            f"data.root={clips}",
            "data.num_frames=33",
            "data.short_side=32",
            "data.crop=32",
            "data.num_workers=0",
            "loss.perceptual_weight=0",
            "loss.disc_start=100",
            "disc.preset=tiny",
            "optim.lr=1e-3",
            "optim.ema_decay=0.5",
            f"train.out_dir={out}",
            "train.batch_size=1",
            "train.max_steps=2",
            "train.ckpt_every=1",
            "log.tensorboard=false",
        ],
    )
    main(cfg)
    return out


def test_export_writes_the_ema_weights_and_the_model_config(run, tmp_path):
    ckpt = load_checkpoint(run / "checkpoints/step_000000002")
    assert cli_main(["export", str(run), str(tmp_path / "ema")]) == 0  # a run folder: its newest checkpoint
    model = from_pretrained(tmp_path / "ema")
    assert model.config.to_dict() == ckpt.state["model_config"]
    params = dict(model.named_parameters())
    assert set(params) == set(ckpt.weights["ema"])
    for name, shadow in ckpt.weights["ema"].items():
        assert torch.equal(params[name].detach(), shadow), name
    # with decay 0.5 after two updates the EMA is not the raw weights; --weights model gives those
    raw = from_pretrained(export_checkpoint(run / "checkpoints/step_000000002", tmp_path / "raw", "model"))
    assert all(torch.equal(p.detach(), ckpt.weights["model"][n]) for n, p in raw.named_parameters())
    assert not torch.equal(
        params["backbone.decoder.conv_out.weight"].detach(), ckpt.weights["model"]["backbone.decoder.conv_out.weight"]
    )
    provenance = json.loads((tmp_path / "ema/export.json").read_text())
    assert provenance["step"] == 2 and provenance["weights"] == "ema" and provenance["ema_updates"] == 2
    assert resolve_checkpoint(run) == run / "checkpoints/step_000000002"
    with pytest.raises(FileNotFoundError, match="neither a training checkpoint"):
        resolve_checkpoint(tmp_path)


def test_latent_stats_match_an_independent_computation_and_normalise(clips, tmp_path):
    torch.manual_seed(0)
    folder = save_pretrained(
        LCVAE(resolve_model_config(ModelSection(preset="lcvae-tiny", backbone=SMALL))), tmp_path / "m"
    )
    assert (
        cli_main(["latent-stats", str(folder), str(clips), "--size", "32", "--workers", "0", "--batch-size", "2"]) == 0
    )
    cfg = json.loads((folder / "config.json").read_text())["config"]
    # independently: first 33 frames (32x32 already), posterior mean, packed kept coefficients
    model = from_pretrained(folder).eval()
    packed = []
    for path in sorted(clips.glob("*.mp4")):
        x = center_crop(to_tensor(read_video(path, 0, 33)), 32).unsqueeze(0)
        with torch.no_grad():
            z = model.encode(x).mode()
            packed.append(model.compressor.pack(model.compressor.analysis(z)).double())
    allp = torch.cat(packed)  # (3, 4, 10, 4, 4)
    mean = allp.mean(dim=(0, 2, 3, 4))
    std = allp.transpose(0, 1).reshape(4, -1).std(dim=1, unbiased=False)
    assert cfg["latent_mean"] == pytest.approx(mean.tolist(), rel=1e-5, abs=1e-6)
    assert cfg["latent_std"] == pytest.approx(std.tolist(), rel=1e-5)
    # the stored statistics make the diffusion latent zero-mean, unit-std per channel on that data
    latents = []
    for path in sorted(clips.glob("*.mp4")):
        x = center_crop(to_tensor(read_video(path, 0, 33)), 32).unsqueeze(0)
        with torch.no_grad():
            latents.append(model.diffusion_latent(x).double())
    d = torch.cat(latents).transpose(0, 1).reshape(4, -1)
    torch.testing.assert_close(d.mean(1), torch.zeros(4, dtype=torch.float64), atol=1e-5, rtol=0)
    torch.testing.assert_close(d.std(1, unbiased=False), torch.ones(4, dtype=torch.float64), atol=1e-5, rtol=0)
    # --dtype bf16 measures with a bf16 model: within bf16's 3 significant digits of the fp32 numbers
    half = save_pretrained(
        LCVAE(resolve_model_config(ModelSection(preset="lcvae-tiny", backbone=SMALL))), tmp_path / "h"
    )
    half.joinpath("model.safetensors").write_bytes((folder / "model.safetensors").read_bytes())
    assert (
        cli_main(
            [
                "latent-stats",
                str(half),
                str(clips),
                "--size",
                "32",
                "--workers",
                "0",
                "--dtype",
                "bf16",
                "--no-progress",
            ]
        )
        == 0
    )
    half_cfg = json.loads((half / "config.json").read_text())["config"]
    assert half_cfg["latent_std"] == pytest.approx(cfg["latent_std"], rel=3e-2)
    assert half_cfg["latent_mean"] == pytest.approx(cfg["latent_mean"], abs=3e-2 * max(cfg["latent_std"]))
    assert half_cfg["latent_std"] != cfg["latent_std"]  # measured in bf16, not fp32 again


def test_channel_stats_streaming_equals_one_shot():
    g = torch.Generator().manual_seed(3)
    chunks = [torch.randn(b, 5, 3, 4, generator=g) * torch.arange(1, 6).view(1, 5, 1, 1) + 2.0 for b in (1, 4, 2)]
    stats = ChannelStats(5)
    for c in chunks:
        stats.update(c)
    flat = torch.cat(chunks).double().transpose(0, 1).reshape(5, -1)
    assert stats.count == flat.shape[1]
    torch.testing.assert_close(stats.mean, flat.mean(1))
    torch.testing.assert_close(stats.std, flat.std(1, unbiased=False))
    with pytest.raises(ValueError, match=r"expected \(B, 5, ...\)"):
        stats.update(torch.zeros(2, 4, 3))


def test_latent_stats_refuses_folders_it_cannot_use(tmp_path, clips, capsys):
    official = tmp_path / "official"
    official.mkdir()
    (official / "config.json").write_text(json.dumps({"_class_name": "WFVAEModel"}))
    from lcvae.train.latent_stats import write_latent_stats

    with pytest.raises(ValueError, match="not one of our folders"):
        write_latent_stats(official, [0.0], [1.0])
    folder = save_pretrained(
        LCVAE(resolve_model_config(ModelSection(preset="lcvae-tiny", backbone=SMALL))), tmp_path / "m"
    )
    with pytest.raises(ValueError, match="zero spread"):
        write_latent_stats(folder, [0.0] * 4, [1.0, 0.0, 1.0, 1.0])
    assert cli_main(["latent-stats", str(folder)]) == 2
    assert "give the videos to measure" in capsys.readouterr().err
    one_video = sorted(clips.iterdir())[0]
    assert cli_main(["latent-stats", str(folder), str(one_video)]) == 2
    assert "is a single video" in capsys.readouterr().err


def test_export_diffusers_format_reconstructs_as_our_folder_and_converts_back(run, tmp_path):
    pytest.importorskip("diffusers")
    from lcvae.models.diffusers_lcvae import AutoencoderKLLCVAE

    ours, theirs, back = tmp_path / "ours", tmp_path / "diffusers", tmp_path / "back"
    assert cli_main(["export", str(run), str(ours)]) == 0
    assert cli_main(["export", str(run), str(theirs), "--format", "diffusers"]) == 0
    assert json.loads((theirs / "config.json").read_text())["_class_name"] == "AutoencoderKLLCVAE"
    assert (theirs / "diffusion_pytorch_model.safetensors").is_file()
    assert json.loads((theirs / "export.json").read_text())["format"] == "diffusers"
    model, vae = from_pretrained(ours), AutoencoderKLLCVAE.from_pretrained(str(theirs)).eval()
    x = torch.rand(1, 3, 33, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        expected = model.reconstruct(x)
        got = vae.decode(vae.encode(x).latent_dist.mode()).sample
    assert (got - expected).abs().max().item() <= 1e-5
    # an existing folder converts (diffusers -> ours) without a training checkpoint; the weights are equal
    assert cli_main(["export", str(theirs), str(back)]) == 0
    again = from_pretrained(back)
    assert again.config.to_dict() == model.config.to_dict()
    assert all(torch.equal(p, model.state_dict()[n]) for n, p in again.state_dict().items())


def test_export_converts_a_preset_only_with_random_weights(tmp_path, capsys):
    pytest.importorskip("diffusers")
    assert cli_main(["export", "lcvae-tiny", str(tmp_path / "x"), "--format", "diffusers"]) == 2
    assert "--random-weights" in capsys.readouterr().err
    assert cli_main(["export", "lcvae-tiny", str(tmp_path / "x"), "--format", "diffusers", "--random-weights"]) == 0
    assert json.loads((tmp_path / "x" / "config.json").read_text())["_class_name"] == "AutoencoderKLLCVAE"
    assert cli_main(["export", "lcvae-tiny", str(tmp_path / "y"), "--random-weights", "--weights", "model"]) == 2
    assert "--weights applies to training checkpoints" in capsys.readouterr().err
