"""The pretrained tiny models the demo ships (pretrained/quickstart/): each file is the one its record
describes (sha256), loads as the model the comparison needs, and reproduces its recorded held-out
numbers, recomputed here from the decoded frames with PSNR written out in the test."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch

from lcvae.data import read_video, resize_short_side, sample_clip_path, to_tensor
from lcvae.data.transforms import center_crop
from lcvae.metrics import ssim
from lcvae.models.io import from_pretrained
from lcvae.train.quickstart import SHIPPED, quickstart_config

# model -> (VAE latent channels, compressed with the paper mask)
EXPECTED = {"wfvae": (16, False), "lcvae": (32, True), "ptlc": (32, True)}


def _record(name: str) -> dict:
    return json.loads((SHIPPED / name / "heldout.json").read_text())


def _heldout(clip: str, frames: int, size: int) -> torch.Tensor:
    video = to_tensor(read_video(sample_clip_path(clip))[-frames:])
    return center_crop(resize_short_side(video, size), size).unsqueeze(0)


def _psnr(x: torch.Tensor, y: torch.Tensor) -> float:
    """Mean over frames of 10 log10(1 / MSE) on [0, 1] values, in float64."""
    a, b = (x.double() + 1) / 2, (y.double() + 1) / 2
    mse = ((a - b) ** 2).mean(dim=(0, 1, 3, 4))  # per frame
    return float((10 * torch.log10(1 / mse)).mean())


def test_the_demo_starts_from_every_shipped_model():
    cfg = quickstart_config()
    assert cfg.pretrained == str(SHIPPED)
    assert sorted(cfg.models) == sorted(EXPECTED)
    for name in cfg.models:
        assert (SHIPPED / name / "model.safetensors").stat().st_size < 50 * 2**20  # each file <= 50 MB
        record = _record(name)
        assert record["steps"] == sum(stage["steps"] for stage in record["stages"])
        for stage in record["stages"]:  # every stage's training log and config is kept
            log = SHIPPED / name / stage["log"]
            assert (log / "metrics.jsonl").is_file() and (log / "train_config.json").is_file()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_shipped_model_reproduces_its_recorded_heldout_numbers(name):
    record = _record(name)
    digest = hashlib.sha256((SHIPPED / name / "model.safetensors").read_bytes()).hexdigest()
    assert digest == record["sha256"], "the weights are not the file the numbers were recorded for"
    model = from_pretrained(SHIPPED / name).eval()
    channels, compressed = EXPECTED[name]
    assert model.config.backbone.latent_channels == channels
    assert (model.compressor is not None) == compressed
    ev = record["evaluation"]
    assert ev["size"] == 64 and ev["frames"] == 33 and len(ev["clips"]) == 3
    for row in record["per_clip"]:
        x = _heldout(row["clip"], ev["frames"], ev["size"])
        with torch.no_grad():
            y = model.reconstruct(x).clamp(-1, 1)
        assert _psnr(x, y) == pytest.approx(row["psnr"], abs=0.01)
        assert float(ssim(x, y)[0]) == pytest.approx(row["ssim"], abs=1e-4)
    assert sum(r["psnr"] for r in record["per_clip"]) / 3 == pytest.approx(record["psnr"], abs=1e-9)
