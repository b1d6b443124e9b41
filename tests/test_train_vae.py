"""The VAE training recipe: exact resume, the adaptive weight by hand, non-finite steps, DDP equivalence,
adaptive compression logs, validation, init from a pretrained WF-VAE, gradient checkpointing, config errors."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lcvae.cli import main as cli_main
from lcvae.data import VideoFolder, write_video
from lcvae.data.datasets import EpochSampler
from lcvae.losses import GeneratorLoss, l1_loss, perceptual_loss
from lcvae.masks import paper_mask
from lcvae.models.discriminator import DISCRIMINATOR_PRESETS, PatchDiscriminator3D
from lcvae.models.io import from_pretrained
from lcvae.models.lcvae import LCVAE
from lcvae.train import vae_checkpoint, vae_setup
from lcvae.train.checkpoint import load_checkpoint
from lcvae.train.export import export_checkpoint
from lcvae.train.train_vae import TrainingDiverged, main
from lcvae.train.vae_config import ModelSection, check, load_train_config, resolve_model_config
from lcvae.train.vae_model import TrainForward, init_backbone_from, load_perceptual, posterior_noise

SMALL = "{base_channels: 8, encoder_energy_flow: 8, decoder_energy_flow: 8}"


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    """Four 40-frame 32x32 clips of moving colour gratings with noise (lossless)."""
    root = tmp_path_factory.mktemp("clips")
    rng = np.random.default_rng(0)
    t = np.arange(40)[:, None, None]
    yy, xx = np.mgrid[0:32, 0:32]
    for k in range(4):
        frames = np.stack(
            [
                127 + 90 * np.sin(0.3 * xx[None] + 0.2 * (k + 1) * t + c) * np.cos(0.25 * yy[None] - 0.1 * t)
                for c in range(3)
            ],
            -1,
        )
        frames = np.clip(frames + rng.normal(0, 6, frames.shape), 0, 255).astype(np.uint8)
        write_video(root / f"clip{k}.mp4", frames, fps=10, codec="libx264rgb", pix_fmt="rgb24", qp=0)
    return root


def tiny_overrides(out_dir: Path, clips: Path, *extra: str) -> list[str]:
    """key=value overrides of a tiny train-vae run on ``clips``; later ones win."""
    return [
        "model.preset=lcvae-tiny",
        f"model.backbone={SMALL}",
        "data.kind=folder",
        f"data.root={clips}",
        "data.num_frames=33",
        "data.short_side=32",
        "data.crop=32",
        "data.num_workers=0",
        "perceptual.net=st-lpips-alex",
        "disc.preset=tiny",
        "optim.lr=1e-4",
        f"train.out_dir={out_dir}",
        "train.batch_size=1",
        "log.every=1",
        "log.tensorboard=false",
        "train.ckpt_every=2",
        "train.keep_last=10",
        *extra,
    ]


def tiny(out_dir: Path, clips: Path, *extra: str):
    return load_train_config(None, tiny_overrides(out_dir, clips, *extra))


def rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


# Randomness everywhere the recipe has it: posterior sampling, backbone and discriminator dropout.
RESUME = (
    "model.backbone={base_channels: 8, encoder_energy_flow: 8, decoder_energy_flow: 8, dropout: 0.1}",
    "disc.dropout=0.3",
    "perceptual.net=st-lpips-vgg",
    "disc.schedule=alternate",
)


@pytest.fixture(scope="module")
def resume_runs(tmp_path_factory, clips):
    root = tmp_path_factory.mktemp("resume")
    whole = main(tiny(root / "A", clips, *RESUME, "train.max_steps=4"))
    first = main(tiny(root / "B", clips, *RESUME, "train.max_steps=2"))
    second = main(tiny(root / "B", clips, *RESUME, "train.max_steps=4"))
    return root, whole, first, second


def test_four_steps_equal_two_plus_resume_plus_two_bit_identical(resume_runs):
    root, whole, first, second = resume_runs
    assert (whole.step, first.step, second.step) == (4, 2, 4)
    a, b = load_checkpoint(whole.checkpoint), load_checkpoint(second.checkpoint)
    assert sorted(a.weights) == ["disc", "ema", "ema_buffers", "model"]
    for group in a.weights:
        for name, tensor in a.weights[group].items():
            assert torch.equal(tensor, b.weights[group][name]), f"{group}/{name} differs after resume"
    for opt in ("opt_g", "opt_d"):
        for key, state in a.state[opt]["state"].items():
            for field, value in state.items():
                assert torch.equal(value, b.state[opt]["state"][key][field])
    assert a.state["data"] == b.state["data"] == {"epoch": 0, "items": 4}  # one epoch of 4 clips, consumed

    # the loss curve of the resumed run continues the uninterrupted one exactly
    def after_resume(run: Path) -> list[dict]:
        return [{k: v for k, v in r.items() if k != "time"} for r in rows(run) if r["step"] > 2]

    assert len(after_resume(root / "A")) == 2 and after_resume(root / "A") == after_resume(root / "B")


def test_ema_survives_resume(resume_runs):
    root, whole, first, second = resume_runs
    mid, end = load_checkpoint(first.checkpoint), load_checkpoint(second.checkpoint)
    # G steps are 0 and 2 (alternating schedule, D on odd steps): 1 EMA update by step 2, 2 by step 4
    assert (mid.state["ema"]["num_updates"], end.state["ema"]["num_updates"]) == (1, 2)
    decay = end.state["ema"]["decay"]
    name = "backbone.decoder.conv_out.weight"
    ema_mid, ema_end, w_end = mid.weights["ema"][name], end.weights["ema"][name], end.weights["model"][name]
    # one more EMA step from the restored shadow (not from the weights, which is what a reset would give)
    torch.testing.assert_close(ema_end, decay * ema_mid + (1 - decay) * w_end, rtol=0, atol=1e-7)
    assert not torch.allclose(ema_end, w_end)


def test_adaptive_weight_equals_hand_computation(tmp_path, clips):
    cfg = tiny(tmp_path / "run", clips, "disc.schedule=both", "train.max_steps=1", "perceptual.net=st-lpips-alex")
    main(cfg)
    logged = rows(tmp_path / "run")[0]["adaptive_weight"]

    # the same model, discriminator, batch and noise, rebuilt here
    model_cfg = check(cfg)
    torch.manual_seed(cfg.train.seed)
    model = LCVAE(model_cfg)
    disc = PatchDiscriminator3D(DISCRIMINATOR_PRESETS["tiny"]).requires_grad_(False)
    dataset = VideoFolder(clips, num_frames=33, random_start=True, short_side=32, crop=32, random_crop=True, seed=0)
    epoch, index = next(iter(EpochSampler(dataset, shuffle=True, seed=0, drop_last=True, rank=0, world_size=1)))
    x = dataset[(epoch, index)]["video"].unsqueeze(0)
    noise = posterior_noise(model_cfg.latent_shape(33, 32, 32), [index], 0, 0)
    x_hat = TrainForward(model)(x, noise)[0]
    perceptual = load_perceptual(cfg.perceptual)
    rec = l1_loss(x, x_hat) + perceptual_loss(perceptual, x, x_hat)
    gan = -disc(x_hat).mean()
    (g_rec,) = torch.autograd.grad(rec, model.last_layer, retain_graph=True)
    (g_gan,) = torch.autograd.grad(gan, model.last_layer)
    expected = 0.5 * g_rec.norm() / (g_gan.norm() + 1e-6)
    assert logged == pytest.approx(float(expected), rel=1e-5)
    assert logged > 0


class _NaNOnCalls(GeneratorLoss):
    bad_calls: set[int] = set()
    calls = 0

    def __call__(self, *args, **kwargs):
        out = super().__call__(*args, **kwargs)
        type(self).calls += 1
        if type(self).calls in self.bad_calls:
            out.total = out.total * float("nan")
        return out


def _nan_loss(monkeypatch, bad: set[int]) -> None:
    cls = type("NaN", (_NaNOnCalls,), {"bad_calls": bad, "calls": 0})
    monkeypatch.setattr(vae_setup, "GeneratorLoss", cls)


def test_nan_loss_is_skipped_and_counted(tmp_path, clips, monkeypatch):
    _nan_loss(monkeypatch, {2})  # G calls: step 0, then step 2 (NaN: batch dropped), step 2 again
    result = main(tiny(tmp_path / "run", clips, *RESUME, "train.max_steps=3"))
    assert (result.step, result.nonfinite_total) == (3, 1)
    events = [r for r in rows(tmp_path / "run") if r.get("event") == "nonfinite"]
    assert events == [{"step": 2, "event": "nonfinite", "in_a_row": 1, "total": 1}]
    ckpt = load_checkpoint(result.checkpoint)
    assert ckpt.state["data"] == {"epoch": 0, "items": 4}  # 4 batches for 3 steps: the epoch of 4 clips
    assert ckpt.state["counters"]["nonfinite_total"] == 1
    assert all(torch.isfinite(v).all() for v in ckpt.weights["model"].values())


def test_nan_in_a_row_stops_with_the_state_before_the_last_update_saved(tmp_path, clips, monkeypatch, resume_runs):
    clean = load_checkpoint(main(tiny(tmp_path / "clean", clips, *RESUME, "train.max_steps=1")).checkpoint)
    _nan_loss(monkeypatch, {2, 3})
    with pytest.raises(
        TrainingDiverged,
        match="2 non-finite steps in a row .step 2.; the state from before the last "
        "update is saved in .*step_000000001",
    ) as err:
        main(tiny(tmp_path / "run", clips, *RESUME, "train.max_steps=4", "train.max_nonfinite=2"))
    saved = load_checkpoint(err.value.checkpoint)
    assert saved.step == clean.step == 1
    for group in saved.weights:  # bit-identical to a clean run stopped before the last good update
        for name, tensor in saved.weights[group].items():
            assert torch.equal(tensor, clean.weights[group][name]), f"{group}/{name}"
    assert saved.state["counters"]["nonfinite_total"] == 2
    # the step-2 checkpoint holds that update's result: set aside, so resume=auto and keep_last skip it
    root = tmp_path / "run/checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["diverged-step_000000002", "step_000000001"]
    aside, clean2 = (
        load_checkpoint(root / "diverged-step_000000002"),
        load_checkpoint(resume_runs[0] / "B/checkpoints/step_000000002"),
    )
    assert all(torch.equal(t, clean2.weights["model"][k]) for k, t in aside.weights["model"].items())


def test_a_failed_save_leaves_the_previous_checkpoint_and_the_run_resumes_from_it(
    tmp_path, clips, monkeypatch, resume_runs
):
    real_save, calls = vae_checkpoint.save_checkpoint, []

    def full_disk_on_second_save(*args, **kwargs):
        calls.append(args[1])
        if len(calls) == 2:

            def writer(path, produce):
                raise OSError(28, "No space left on device")

            kwargs["_writer"] = writer
        return real_save(*args, **kwargs)

    monkeypatch.setattr(vae_checkpoint, "save_checkpoint", full_disk_on_second_save)
    with pytest.raises(OSError, match="No space left"):
        main(tiny(tmp_path / "run", clips, *RESUME, "train.max_steps=2", "train.ckpt_every=1"))
    root = tmp_path / "run/checkpoints"
    assert calls == [1, 2] and sorted(p.name for p in root.iterdir()) == ["step_000000001"]
    assert load_checkpoint(root / "step_000000001").step == 1
    monkeypatch.setattr(vae_checkpoint, "save_checkpoint", real_save)
    resumed = main(tiny(tmp_path / "run", clips, *RESUME, "train.max_steps=2", "train.ckpt_every=1"))
    again, clean = load_checkpoint(resumed.checkpoint), load_checkpoint(resume_runs[2].checkpoint)
    for group in clean.weights:
        for name, tensor in clean.weights[group].items():
            assert torch.equal(again.weights[group][name], tensor), f"{group}/{name}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_process_gloo_matches_one_process_with_the_same_global_batch(tmp_path, clips):
    common = ["disc.schedule=both", "disc.bn_group=1", "train.max_steps=3", "train.ckpt_every=1"]
    one = tiny(tmp_path / "one", clips, *common, "train.batch_size=2")
    main(one)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(_free_port()),
        "-m",
        "lcvae",
        "train-vae",
        *tiny_overrides(tmp_path / "two", clips, *common, "train.batch_size=1"),
    ]
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = rows(tmp_path / "one"), rows(tmp_path / "two")
    assert [r["step"] for r in a] == [r["step"] for r in b] == [1, 2, 3]
    for key in ("total", "l1", "perceptual", "kl", "gan", "adaptive_weight", "d_hinge"):
        assert b[0][key] == pytest.approx(a[0][key], rel=1e-4), key  # same weights, same global batch
        for x, y in zip(a[1:], b[1:]):  # Adam's first steps are sign-like: float noise moves tiny weights
            # the adaptive weight is a ratio of two gradient norms, so it shows that drift the most
            assert y[key] == pytest.approx(x[key], rel=5e-2 if key == "adaptive_weight" else 2e-2), key
    # the gradients of step 0 (Adam's first moment = 0.1 g) agree over the whole generator and discriminator
    ca, cb = (
        load_checkpoint(tmp_path / "one/checkpoints/step_000000001"),
        load_checkpoint(tmp_path / "two/checkpoints/step_000000001"),
    )
    for opt in ("opt_g", "opt_d"):
        ga = torch.cat([s["exp_avg"].flatten() for _, s in sorted(ca.state[opt]["state"].items())])
        gb = torch.cat([s["exp_avg"].flatten() for _, s in sorted(cb.state[opt]["state"].items())])
        assert float((ga - gb).norm() / ga.norm()) < 2e-3, opt
    assert "world size 2" in proc.stderr


def test_adaptive_compression_logs_selection_overlap_validation_and_tensorboard(tmp_path, clips):
    cfg = tiny(
        tmp_path / "run",
        clips,
        "model.compression=adaptive",
        "train.max_steps=2",
        "loss.disc_start=100",
        "log.val_every=2",
        "log.tensorboard=true",
        f"data.val_root={clips}",
        "data.val_clips=2",
    )
    result = main(cfg)
    lines = [json.loads(x) for x in (tmp_path / "run/adaptive_selection.jsonl").read_text().splitlines()]
    paper = set(paper_mask(8))
    assert [x["step"] for x in lines] == [0, 1]
    for line in lines:
        sel = line["selection"]
        assert len(sel) == 128 and sel == sorted(set(sel)) and all(0 <= i < 256 for i in sel)
        assert line["overlap_paper"] == pytest.approx(len(paper & set(sel)) / 128)
    # validation = the EMA model on the held-out clips: recompute it from the exported EMA weights
    val = [r["val"] for r in rows(tmp_path / "run") if "val" in r]
    assert len(val) == 1 and val[0]["metric"] == "ST-LPIPS"
    model = from_pretrained(export_checkpoint(result.checkpoint, tmp_path / "ema")).eval()
    from lcvae.metrics import psnr

    held = VideoFolder(clips, num_frames=33, short_side=32, crop=32)
    scores = []
    for i in range(2):
        x = held[i]["video"].unsqueeze(0)
        with torch.no_grad():
            scores.append(float(psnr(x, model.reconstruct(x).clamp(-1, 1))[0]))
    assert val[0]["psnr"] == pytest.approx(sum(scores) / 2, rel=1e-6)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path / "run/tensorboard"))
    acc.Reload()
    assert acc.Scalars("val/psnr")[0].value == pytest.approx(val[0]["psnr"], rel=1e-6)
    assert [e.value for e in acc.Scalars("train/l1")] == pytest.approx(
        [r["l1"] for r in rows(tmp_path / "run") if "l1" in r]
    )
    assert "val/input_vs_reconstruction" in acc.Tags()["images"]


def test_progress_line_has_rate_and_eta(tmp_path, clips, caplog):
    caplog.set_level("INFO", logger="lcvae.train.train_vae")
    main(tiny(tmp_path / "run", clips, "train.max_steps=2", "loss.perceptual_weight=0", "loss.disc_start=100"))
    lines = [r.message for r in caplog.records if r.message.startswith("step ")]
    assert len(lines) == 2 and lines[1].startswith("step 2/2 [G] total ")
    assert " step/s, ETA " in lines[1]


def _official_folder(tmp_path: Path, model: LCVAE) -> Path:
    from safetensors.torch import save_file

    folder = tmp_path / "official"
    folder.mkdir()
    save_file(
        {k: v.contiguous() for k, v in model.backbone.state_dict().items()},
        folder / "diffusion_pytorch_model.safetensors",
    )
    (folder / "config.json").write_text(
        json.dumps({"_class_name": "WFVAEModel", "base_channels": 8, "latent_dim": 4, "t_interpolation": "trilinear"})
    )
    return folder


def test_init_from_pretrained_wfvae_copies_matching_latent_channels(tmp_path):
    torch.manual_seed(0)
    src = LCVAE(
        resolve_model_config(
            ModelSection(
                preset="wfvae-tiny", backbone={"base_channels": 8, "encoder_energy_flow": 8, "decoder_energy_flow": 8}
            )
        )
    )
    folder = _official_folder(tmp_path, src)
    dst = LCVAE(
        resolve_model_config(
            ModelSection(
                preset="lcvae-tiny", backbone={"base_channels": 8, "encoder_energy_flow": 8, "decoder_energy_flow": 8}
            )
        )
    )
    fresh = {k: v.clone() for k, v in dst.backbone.state_dict().items()}
    adapted = init_backbone_from(dst, folder)
    assert adapted == ["encoder.conv_out.conv.weight", "encoder.conv_out.conv.bias", "decoder.conv_in.conv.weight"]
    s, d = src.backbone.state_dict(), dst.backbone.state_dict()
    for k in d:
        if k not in adapted:
            assert torch.equal(d[k], s[k]), k
    w = d["encoder.conv_out.conv.weight"]
    assert torch.equal(w[:4], s["encoder.conv_out.conv.weight"][:4]) and torch.equal(
        w[8:12], s["encoder.conv_out.conv.weight"][4:]
    )
    assert torch.equal(w[4:8], fresh["encoder.conv_out.conv.weight"][4:8])  # new mean rows keep their init
    x = torch.rand(1, 3, 9, 32, 32) * 2 - 1
    with torch.no_grad():
        ps, pd = src.backbone.encode(x), dst.backbone.encode(x)
        torch.testing.assert_close(pd.mean[:, :4], ps.mean)
        torch.testing.assert_close(pd.logvar[:, :4], ps.logvar)
        z = torch.randn(1, 4, 3, 4, 4)
        extra = torch.randn(1, 4, 3, 4, 4) * 10  # the new channels do not reach the output at the start
        torch.testing.assert_close(dst.backbone.decode(torch.cat([z, extra], 1)), src.backbone.decode(z))

    wide = LCVAE(resolve_model_config(ModelSection(preset="wfvae-tiny", backbone={"base_channels": 16})))
    with pytest.raises(ValueError, match="shape mismatch"):
        init_backbone_from(wide, folder)


def test_gradient_checkpointing_gives_the_same_gradients(monkeypatch):
    cfg = resolve_model_config(
        ModelSection(
            preset="lcvae-tiny", backbone={"base_channels": 8, "encoder_energy_flow": 8, "decoder_energy_flow": 8}
        )
    )
    torch.manual_seed(0)
    plain = LCVAE(cfg)
    ckpt = LCVAE(cfg)
    ckpt.load_state_dict(plain.state_dict())
    import lcvae.models.wfvae as wfvae
    from lcvae.models.layers import Attention, ResBlock2D, ResBlock3D

    blocks = sum(isinstance(m, (ResBlock2D, ResBlock3D, Attention)) for m in plain.modules())
    recomputed = []

    def counting_checkpoint(block, *args, **kwargs):
        recomputed.append(block)
        return torch.utils.checkpoint.checkpoint(block, *args, **kwargs)

    monkeypatch.setattr(wfvae, "checkpoint", counting_checkpoint)
    assert not ckpt.gradient_checkpointing
    ckpt.gradient_checkpointing = True
    assert ckpt.gradient_checkpointing and list(ckpt.state_dict()) == list(plain.state_dict())
    x = torch.rand(1, 3, 33, 32, 32) * 2 - 1
    noise = torch.randn(1, *cfg.latent_shape(33, 32, 32))
    for m in (plain, ckpt):
        TrainForward(m)(x, noise)[0].square().mean().backward()
    assert blocks >= 20 and len(recomputed) == blocks  # every residual and attention block, once per forward
    for (name, a), (_, b) in zip(plain.named_parameters(), ckpt.named_parameters()):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-5, atol=1e-7, msg=name)
    with torch.no_grad():
        torch.testing.assert_close(ckpt.eval().reconstruct(x), plain.eval().reconstruct(x))


def test_config_errors_come_before_anything_starts(tmp_path, clips, capsys):
    out = tmp_path / "never"
    base = ["model.preset=lcvae-tiny", f"data.root={clips}", "data.num_frames=33", f"train.out_dir={out}"]
    assert cli_main(["train-vae", *base, "optim.lrr=1e-4"]) == 2
    assert "unknown config key 'optim.lrr'; did you mean 'optim.lr'?" in capsys.readouterr().err
    yaml_file = tmp_path / "bad.yaml"
    yaml_file.write_text("model:\n  presett: lcvae-tiny\n")
    assert cli_main(["train-vae", "--config", str(yaml_file), *base[1:]]) == 2
    assert "did you mean 'model.preset'?" in capsys.readouterr().err
    assert cli_main(["train-vae", *base, "model.backbone={base_chanels: 8}"]) == 2
    assert "did you mean 'base_channels'?" in capsys.readouterr().err
    assert cli_main(["train-vae", *base, "data.num_frames=32"]) == 2
    err = capsys.readouterr().err
    assert "1 + 32k frames" in err and "use 1 or 33" in err
    assert cli_main(["train-vae", *base, "data.crop=40"]) == 2
    assert "multiples of 16" in capsys.readouterr().err
    assert not out.exists()


def test_compression_modes_resolve_to_model_configs():
    tiny_bb = {"base_channels": 8}
    none = resolve_model_config(ModelSection(preset="lcvae-tiny", compression="none", backbone=tiny_bb))
    assert none.compression is None and none.diffusion_channels == 8
    fixed = resolve_model_config(
        ModelSection(preset="wfvae-tiny", compression="fixed", mask="keep25", latent_channels=16)
    )
    assert fixed.compression.mask == "keep25" and fixed.backbone.latent_channels == 16 and fixed.diffusion_channels == 4
    adaptive = resolve_model_config(ModelSection(preset="lcvae-chn8", compression="adaptive"))
    assert adaptive.compression.adaptive and adaptive.compression.mask == "reference" and not adaptive.backbone.causal
    with pytest.raises(ValueError, match="compression is 'none'"):
        resolve_model_config(ModelSection(preset="lcvae-tiny", compression="none", mask="paper"))


def test_training_forward_equals_the_model_forward_and_noise_is_per_sample():
    cfg = resolve_model_config(
        ModelSection(
            preset="lcvae-tiny", backbone={"base_channels": 8, "encoder_energy_flow": 8, "decoder_energy_flow": 8}
        )
    )
    torch.manual_seed(0)
    model = LCVAE(cfg)
    x = torch.rand(2, 3, 33, 32, 32) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(
            TrainForward(model)(x, None)[0], model(x, sample_posterior=False).reconstruction, rtol=0, atol=0
        )
        shape = (2, *cfg.latent_shape(33, 32, 32))
        noise = torch.randn(shape, generator=torch.Generator().manual_seed(4))
        ours = TrainForward(model)(x, noise)
        theirs = model(x, generator=torch.Generator().manual_seed(4))
        torch.testing.assert_close(ours[0], theirs.reconstruction, rtol=0, atol=0)
        torch.testing.assert_close(ours[1], theirs.posterior.mean, rtol=0, atol=0)
    # a sample's noise depends on (seed, step, index) only: not on its batch or position in it
    a = posterior_noise((8, 9, 4, 4), [5, 7], step=3, seed=0)
    assert torch.equal(a[1], posterior_noise((8, 9, 4, 4), [7], step=3, seed=0)[0])
    assert not torch.equal(a[1], posterior_noise((8, 9, 4, 4), [7], step=4, seed=0)[0])
    assert not torch.equal(a[0], a[1]) and abs(float(a.std()) - 1.0) < 0.1
