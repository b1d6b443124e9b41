"""lcvae sample: N videos of the right frame count and size, seeds independent of the batch, the VAE
check, FVD16 against an independent computation, the random-I3D label, and the PNG writer."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lcvae.cli import main as cli_main
from lcvae.data import probe, read_video, sample_clip_paths, to_tensor
from lcvae.data.transforms import center_crop, resize_short_side
from lcvae.metrics import fvd_from_features
from lcvae.models.io import from_pretrained, save_pretrained
from lcvae.models.lcvae import LCVAE
from lcvae.models.presets import get_preset
from lcvae.sampling import generate, load_denoiser, random_i3d, sample_latents, write_png
from lcvae.train.train_latte import main as train_main
from lcvae.config import load_config
from lcvae.train.latte_config import TrainLatteConfig
from test_train_latte import make_vae_and_cache


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _train(tmp, vae_dir, cache, *overrides):
    base = [f"run_dir={tmp / 'run'}", f"cache={cache}", f"vae={vae_dir}", "model.preset=tiny", "batch_size=2",
            "max_steps=2", "ckpt_every=2", "sample.every=0", "num_workers=0", "tensorboard=false", "optim.lr=1e-2"]
    return train_main(load_config(TrainLatteConfig, None, base + list(overrides)))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("trained")
    vae_dir, cache = make_vae_and_cache(tmp)
    return _train(tmp, vae_dir, cache), vae_dir


class MomentFeatures:
    """A cheap deterministic stand-in for I3D: per-channel mean, std and mean |temporal difference|."""

    name, dim = "moments", 9

    def __call__(self, videos: torch.Tensor) -> torch.Tensor:
        diff = (videos[:, :, 1:] - videos[:, :, :-1]).abs().mean(dim=(2, 3, 4))
        return torch.cat([videos.mean(dim=(2, 3, 4)), videos.std(dim=(2, 3, 4)), diff], dim=1).double()


def test_sample_writes_n_videos_of_the_right_frame_count_and_size(trained, tmp_path):
    ckpt, vae_dir = trained
    summary = generate(ckpt.parent.parent, from_pretrained(vae_dir), tmp_path, n=3, batch_size=2, steps=2, seed=4)
    files = sorted(tmp_path.glob("*.mp4"))
    assert [f.name for f in files] == ["video_00000_class0.mp4", "video_00001_class1.mp4", "video_00002_class2.mp4"]
    for f in files:
        info = probe(f)
        assert (info.frames, info.height, info.width) == (33, 32, 32)
    assert summary["video_shape"] == [3, 33, 32, 32] and summary["step"] == 2
    assert json.loads((tmp_path / "summary.json").read_text())["files"] == [f.name for f in files]
    image = pytest.importorskip("PIL.Image").open(tmp_path / "grid.png")
    assert image.size == (8 * 34 + 2, 3 * 34 + 2)  # 8 frames per row, one row per video, 2-pixel gaps


def test_a_video_does_not_depend_on_the_batch_it_is_sampled_in(trained):
    den = load_denoiser(trained[0])
    labels = torch.tensor([0, 1, 2])

    def run(indices, seed=0, method="ddpm"):
        return sample_latents(den.model, den.diffusion, den.latent_shape, indices, seed=seed, labels=labels[indices],
                              guidance=1.5, steps=4, method=method)

    together = run([0, 1, 2])
    apart = torch.cat([run([0]), run([1, 2])])
    torch.testing.assert_close(together, apart, rtol=0, atol=1e-5)
    assert not torch.allclose(run([0], seed=1), together[:1], atol=1e-2)
    assert not torch.allclose(run([0], method="ddim"), together[:1], atol=1e-2)  # DDPM adds step noise


def test_fvd16_equals_features_computed_independently(trained, tmp_path):
    ckpt, vae_dir = trained
    real_dir = tmp_path / "real"
    real_dir.mkdir()
    clips = {k: p for k, p in sample_clip_paths().items() if k.startswith("carphone")}
    for name, path in clips.items():
        (real_dir / f"{name}.mp4").symlink_to(path)
    vae = from_pretrained(vae_dir)
    summary = generate(ckpt, vae, tmp_path / "out", n=3, batch_size=3, steps=2, seed=1, fvd_real=real_dir,
                       i3d=MomentFeatures(), grid=False)

    extractor = MomentFeatures()
    real = []
    for name in sorted(clips):  # first 16 frames, short side to 32, centre crop 32x32
        video = to_tensor(read_video(real_dir / f"{name}.mp4", start=0, num_frames=16))
        real.append(extractor(center_crop(resize_short_side(video, 32), 32)[None]))
    den = load_denoiser(ckpt)
    z = sample_latents(den.model, den.diffusion, den.latent_shape, [0, 1, 2], seed=1, labels=torch.tensor([0, 1, 2]),
                       steps=2)
    with torch.no_grad():
        fake = extractor(vae.decode_latent(z).clamp(-1, 1)[:, :, :16])
    expected = fvd_from_features(torch.cat(real), fake)
    assert summary["fvd16"] == pytest.approx(expected, rel=1e-4, abs=1e-6)
    assert (summary["fvd_real_videos"], summary["fvd_fake_videos"], summary["i3d"]) == (2, 3, "moments")
    assert "i3d_note" not in summary


def test_random_i3d_is_labelled_and_separates_clips():
    i3d = random_i3d()
    assert "RANDOM" in i3d.name
    clips = torch.stack([torch.full((3, 9, 32, 32), -0.5), torch.full((3, 9, 32, 32), 0.5)])
    feats = i3d(clips)
    # the default init would give every clip the same features (every FVD 0); He init keeps them apart
    assert (feats[0] - feats[1]).norm() > 0.1 * feats.norm(dim=1).mean()


def test_sampling_refuses_another_vae_and_misused_options(trained, tmp_path):
    ckpt, vae_dir = trained
    torch.manual_seed(9)
    with pytest.raises(ValueError, match="another VAE"):
        generate(ckpt, LCVAE(get_preset("lcvae-tiny")), tmp_path, n=1, steps=2)
    with pytest.raises(ValueError, match=r"class label must be in \[0, 2\]"):
        generate(ckpt, from_pretrained(vae_dir), tmp_path, n=1, steps=2, class_label=3)
    code = cli_main(["sample", "--latte", str(ckpt), "--vae", str(vae_dir), "--out", str(tmp_path), "--fvd", str(tmp_path)])
    assert code == 2  # --fvd without --i3d or --i3d-random


def test_sample_command_writes_the_requested_class(trained, tmp_path, capsys):
    ckpt, vae_dir = trained
    code = cli_main(["sample", "--latte", str(ckpt), "--vae", str(vae_dir), "--out", str(tmp_path), "--n", "2",
                     "--steps", "4", "--ddim", "--class-label", "1", "--guidance", "2"])
    assert code == 0 and "wrote 2 videos [3, 33, 32, 32]" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.glob("*.mp4")) == ["video_00000_class1.mp4", "video_00001_class1.mp4"]


def test_png_writer_round_trips():
    image = np.random.default_rng(0).integers(0, 256, (7, 5, 3), dtype=np.uint8)
    pil = pytest.importorskip("PIL.Image")
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        path = write_png(Path(d) / "x.png", image)
        assert np.array_equal(np.asarray(pil.open(path).convert("RGB")), image)
