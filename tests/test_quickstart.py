"""lcvae quickstart on a tiny budget: the table against an independent evaluation, the energy picture
against an explicit Haar, the files it promises; and the shipped configs stay valid."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from lcvae.data import probe, read_video, resize_short_side, sample_clip_path, to_tensor
from lcvae.data.transforms import center_crop
from lcvae.metrics import psnr
from lcvae.models.io import from_pretrained
from lcvae.train.quickstart import QuickstartConfig, load_quickstart_config, run_quickstart
from lcvae.train.vae_config import load_train_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    out = tmp_path_factory.mktemp("quickstart")
    cfg = load_quickstart_config(None, [
        f"out_dir={out}", "seconds_per_model=0.01", "video_upscale=2",
        "train.model.backbone={base_channels: 8, encoder_energy_flow: 8, decoder_energy_flow: 8}",
        "train.data.short_side=32", "train.data.val_crop=32", "train.log.tensorboard=false"])
    return cfg, run_quickstart(cfg)


def _heldout(name: str) -> torch.Tensor:
    frames = read_video(sample_clip_path(name))[-33:]
    return center_crop(resize_short_side(to_tensor(frames), 32), 32).unsqueeze(0)


def _explicit_subband_energy(z: torch.Tensor) -> torch.Tensor:
    """Mean square of each (t, h, w) Haar subband from the 2x2x2 cells directly, order s = 4t + 2h + w."""
    out = []
    for s in range(8):
        t_hi, h_hi, w_hi = s >> 2 & 1, s >> 1 & 1, s & 1
        coeff = sum((-1) ** (t_hi * a + h_hi * b + w_hi * c) * z[:, :, a::2, b::2, c::2]
                    for a in (0, 1) for b in (0, 1) for c in (0, 1)) / math.sqrt(8)
        out.append(coeff.double().pow(2).mean())
    return torch.stack(out)


def test_table_matches_an_independent_evaluation(result):
    cfg, res = result
    data = json.loads((res.out_dir / "results.json").read_text())
    assert [r["model"] for r in data["rows"]] == ["lcvae-tiny", "wfvae-tiny"]
    assert data["clips"] == ["bigbuckbunny", "bikes", "carphone_pristine"] and data["metric"] == "ST-LPIPS"
    for row in data["rows"]:
        assert row["steps"] == 1  # a budget of 0.01 s stops after the first step
        model = from_pretrained(res.out_dir / "models" / row["model"]).eval()
        scores = []
        for name, clip_row in zip(data["clips"], row["per_clip"]):
            x = _heldout(name)
            with torch.no_grad():
                scores.append(float(psnr(x, model.reconstruct(x).clamp(-1, 1))[0]))
            assert clip_row["psnr"] == pytest.approx(scores[-1], rel=1e-6)
        assert row["psnr"] == pytest.approx(sum(scores) / 3, rel=1e-6)
        assert f"| {row['model']} |" in res.table and f"{row['psnr']:.2f}" in res.table
    assert data["rows"][0]["diffusion_shape"] == [4, 10, 4, 4] and data["rows"][1]["diffusion_shape"] == [4, 9, 4, 4]


def test_latent_energy_matches_an_explicit_haar(result):
    cfg, res = result
    energy = json.loads((res.out_dir / "latent_energy.json").read_text())
    for name in ("lcvae-tiny", "wfvae-tiny"):
        model = from_pretrained(res.out_dir / "models" / name).eval()
        total = torch.zeros(8, dtype=torch.float64)
        for clip in ("bigbuckbunny", "bikes", "carphone_pristine"):
            with torch.no_grad():
                z = model.encode(_heldout(clip)).mode()
            total += _explicit_subband_energy(z[:, :, 1:])  # causal: the image frame is left out
        assert energy[name]["subband_share"] == pytest.approx((total / total.sum()).tolist(), rel=1e-6)
    assert 0.0 < energy["lcvae-tiny"]["mask_kept_share"] <= 1.0 and "mask_kept_share" not in energy["wfvae-tiny"]


def test_outputs_are_written(result):
    cfg, res = result
    out = res.out_dir
    for clip in ("bigbuckbunny", "bikes", "carphone_pristine"):
        info = probe(out / "videos" / f"{clip}.mp4")
        assert (info.frames, info.width, info.height) == (33, 3 * 32 * 2, 32 * 2)  # original | LC-VAE | WF-VAE
    curves = json.loads((out / "loss_curves.json").read_text())
    assert {name: c["step"] for name, c in curves.items()} == {"lcvae-tiny": [1], "wfvae-tiny": [1]}
    for png in ("loss_curves.png", "latent_energy.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    readme = (out / "README.txt").read_text()
    assert res.table in readme and "shift-tolerant" in readme and "videos/<clip>.mp4" in readme
    assert (out / "table.md").read_text().strip() == res.table


def test_shipped_configs_load_and_check():
    assert load_quickstart_config(CONFIGS / "quickstart.yaml") == QuickstartConfig()
    load_train_config(CONFIGS / "train_tiny_cpu.yaml")
    for override in (["model.preset=lcvae-chn4"], ["model.preset=lcvae-chn16"],  # one file, the size an override
                     ["model.preset=lcvae-chn8-causal", "data.num_frames=33"]):
        assert load_train_config(CONFIGS / "train_lcvae.yaml", override).model.preset == override[0].split("=")[1]
    with pytest.raises(ValueError, match="1 \\+ 32k frames"):  # causal without 33 frames, as the header says
        load_train_config(CONFIGS / "train_lcvae.yaml", ["model.preset=lcvae-chn8-causal"])
    cfg = load_train_config(CONFIGS / "train_chn8_from_wfvae_l.yaml", ["model.init_from=null"])
    assert cfg.model.preset == "wfvae-l-16" and cfg.model.compression == "fixed"
    chn8 = load_train_config(CONFIGS / "train_lcvae.yaml")
    assert chn8.model.preset == "lcvae-chn8"
    assert (chn8.optim.lr, chn8.loss.kl_weight, chn8.optim.ema_decay, chn8.train.max_steps) == (1e-5, 1e-6, 0.999, 200_000)


def test_quickstart_config_errors_suggest_the_key():
    with pytest.raises(ValueError, match="did you mean 'seconds_per_model'"):
        load_quickstart_config(None, ["seconds_per_modle=3"])
    with pytest.raises(ValueError, match="did you mean 'train.optim.lr'"):
        load_quickstart_config(None, ["train.optim.lrr=3"])
