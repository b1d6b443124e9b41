"""lcvae sample: N videos of the right frame count and size, seeds independent of the batch, the VAE
check, and FVD16 between the written samples and a real folder."""

from __future__ import annotations

import json

import pytest
import torch

from lcvae.cli import main as cli_main
from lcvae.config import load_config
from lcvae.data import probe, read_video, sample_clip_paths, to_tensor
from lcvae.metrics import fvd_from_features
from lcvae.models.io import from_pretrained
from lcvae.models.lcvae import LCVAE
from lcvae.models.presets import get_preset
from lcvae.perceptual.i3d import preprocess_clips
from lcvae.sampling import generate, load_denoiser, sample_latents
from lcvae.train.latte_config import TrainLatteConfig
from lcvae.train.train_latte import main as train_main
from test_train_latte import make_vae_and_cache

pytestmark = pytest.mark.usefixtures("one_thread")


def _train(tmp, vae_dir, cache, *overrides):
    base = [
        f"run_dir={tmp / 'run'}",
        f"cache={cache}",
        f"vae={vae_dir}",
        "model.preset=tiny",
        "batch_size=2",
        "max_steps=2",
        "ckpt_every=2",
        "sample.every=0",
        "num_workers=0",
        "tensorboard=false",
        "optim.lr=1e-2",
    ]
    return train_main(load_config(TrainLatteConfig, None, base + list(overrides)))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("trained")
    vae_dir, cache = make_vae_and_cache(tmp)
    return _train(tmp, vae_dir, cache), vae_dir


class MomentFeatures:
    """A cheap deterministic stand-in for I3D: per-channel mean, std and mean |temporal difference|."""

    name, dim = "moments", 9

    def to(self, device):
        return self

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
        return sample_latents(
            den.model,
            den.diffusion,
            den.latent_shape,
            indices,
            seed=seed,
            labels=labels[indices],
            guidance=1.5,
            steps=4,
            method=method,
        )

    together = run([0, 1, 2])
    apart = torch.cat([run([0]), run([1, 2])])
    torch.testing.assert_close(together, apart, rtol=0, atol=1e-5)
    assert not torch.allclose(run([0], seed=1), together[:1], atol=1e-2)
    assert not torch.allclose(run([0], method="ddim"), together[:1], atol=1e-2)  # DDPM adds step noise


def test_fvd16_compares_the_written_samples_with_the_real_folder(trained, tmp_path):
    ckpt, vae_dir = trained
    real_dir = tmp_path / "real"
    real_dir.mkdir()
    for name, path in sample_clip_paths().items():
        if name.startswith("carphone"):
            (real_dir / f"{name}.mp4").symlink_to(path)
    out = tmp_path / "out"
    summary = generate(
        ckpt,
        from_pretrained(vae_dir),
        out,
        n=3,
        batch_size=3,
        steps=2,
        seed=1,
        fvd_real=real_dir,
        fvd_extractor=MomentFeatures(),
        grid=False,
    )

    def features(folder):  # first 16 frames of every video, resized to 224 as the FVD protocol does
        clips = [to_tensor(read_video(p, start=0, num_frames=16)) for p in sorted(folder.glob("*.mp4"))]
        return torch.cat([MomentFeatures()(preprocess_clips(c[None])) for c in clips])

    expected = fvd_from_features(features(real_dir), features(out))
    fvd = summary["fvd"]
    assert fvd["fvd"] == pytest.approx(expected, rel=1e-6)
    assert (fvd["frames"], fvd["real"]["used"], fvd["fake"]["used"], fvd["extractor"]) == (16, 2, 3, "moments")
    with pytest.raises(ValueError, match="holds other videos"):
        generate(ckpt, from_pretrained(vae_dir), out, n=2, steps=2, fvd_real=real_dir, fvd_extractor=MomentFeatures())


def test_sampling_refuses_another_vae_and_misused_options(trained, tmp_path):
    ckpt, vae_dir = trained
    torch.manual_seed(9)
    with pytest.raises(ValueError, match="another VAE"):
        generate(ckpt, LCVAE(get_preset("lcvae-tiny")), tmp_path, n=1, steps=2)
    with pytest.raises(ValueError, match=r"class label must be in \[0, 2\]"):
        generate(ckpt, from_pretrained(vae_dir), tmp_path, n=1, steps=2, class_label=3)
    code = cli_main(
        ["sample", "--latte", str(ckpt), "--vae", str(vae_dir), "--out", str(tmp_path), "--fvd", str(tmp_path)]
    )
    assert code == 2  # --fvd without --i3d or --i3d-random


def test_sample_command_writes_the_requested_class(trained, tmp_path, capsys):
    ckpt, vae_dir = trained
    code = cli_main(
        [
            "sample",
            "--latte",
            str(ckpt),
            "--vae",
            str(vae_dir),
            "--out",
            str(tmp_path),
            "--n",
            "2",
            "--steps",
            "4",
            "--ddim",
            "--class-label",
            "1",
            "--guidance",
            "2",
        ]
    )
    assert code == 0 and "wrote 2 videos [3, 33, 32, 32]" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.glob("*.mp4")) == ["video_00000_class1.mp4", "video_00001_class1.mp4"]


def test_sample_progress_counts_every_denoising_step_and_out_must_be_a_folder(trained, tmp_path, caplog, capsys):
    import logging

    ckpt, vae_dir = trained
    caplog.set_level(logging.INFO, logger="lcvae.progress")
    generate(ckpt.parent.parent, from_pretrained(vae_dir), tmp_path / "s", n=3, batch_size=2, steps=2, seed=4)
    # 2 batches x 2 steps; the final line (no TTY under pytest) says so
    assert [m for m in caplog.messages if m.startswith("sample: ")][-1].startswith("sample: 4/4 step,")
    (tmp_path / "file").write_text("x")
    assert cli_main(["sample", "--latte", "nowhere", "--vae", "nowhere", "--out", str(tmp_path / "file")]) == 2
    assert "is a file; --out takes a folder" in capsys.readouterr().err  # before the checkpoints are read
