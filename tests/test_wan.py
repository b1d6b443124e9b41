"""Wan 2.1 VAE backbone (diffusers AutoencoderKLWan) under LC-VAE: equal to diffusers' own encode/decode,
frame rule, local diffusers folders, widening, compression on the Wan latent, training and resume, analysis.

Tiny random-weight Wan models (base_dim 8), 32x32 frames, one CPU thread (the tiny convolutions are
slower with two threads fighting over two shared cores).
"""

from __future__ import annotations

import json

import pytest
import torch

from lcvae.masks import CompressionConfig
from lcvae.models.io import from_pretrained, load_config, save_pretrained
from lcvae.models.lcvae import LCVAE, LCVAEConfig
from lcvae.models.presets import get_preset
from lcvae.models.wan import (
    WanVAE,
    WanVAEConfig,
    lcvae_config_from_diffusers,
    wan_lcvae_from_diffusers,
    widen_wan_state,
)
from lcvae.train.checkpoint import load_checkpoint

diffusers = pytest.importorskip("diffusers")

TINY = WanVAEConfig(latent_channels=4, base_dim=8, dim_mult=(1, 2, 2, 2), num_res_blocks=1)
STATS = ([0.1, -0.2, 0.3, -0.4], [1.5, 2.0, 0.5, 1.0])


pytestmark = pytest.mark.usefixtures("one_thread")


def video(frames: int, seed: int = 0, batch: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, frames, 32, 32, generator=g) * 2 - 1


def perturb(module: torch.nn.Module, seed: int, scale: float = 0.02) -> None:
    """Move every weight off its init so that copies and loads are tested on values, not on seeds."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)


def diffusers_wan(config: WanVAEConfig, seed: int = 0, **kwargs):
    torch.manual_seed(seed)
    vae = diffusers.AutoencoderKLWan(**{**config.diffusers_kwargs(), **kwargs}).eval()
    perturb(vae, seed + 1)
    with torch.no_grad():
        vae.decoder.conv_out.weight.mul_(8.0)  # outputs well beyond [-1, 1], so clamping is visible
    return vae


@pytest.fixture(scope="module")
def wan_folder(tmp_path_factory):
    """A local diffusers Wan folder (save_pretrained of a tiny random model), as released models are laid out."""
    vae = diffusers_wan(TINY, latents_mean=STATS[0], latents_std=STATS[1])
    folder = tmp_path_factory.mktemp("wan") / "vae"
    vae.save_pretrained(folder, safe_serialization=True)
    return folder, vae


# ------------------------------------------------------------------ the adapter equals diffusers


def test_reconstruction_equals_diffusers_encode_decode_without_compression(wan_folder):
    folder, vae = wan_folder
    model = from_pretrained(folder).eval()
    x = video(9, batch=2)
    with torch.no_grad():
        ref = vae.encode(x).latent_dist
        ref_video = vae.decode(ref.mode()).sample
        post = model.encode(x)
        rec = model.reconstruct(x)
    assert post.mean.shape == (2, 4, 3, 4, 4)
    torch.testing.assert_close(post.mean, ref.mean, rtol=0, atol=0)
    torch.testing.assert_close(post.logvar, ref.logvar, rtol=0, atol=0)
    # diffusers clamps its output; ours is the same computation without the clamp
    outside = rec.abs() > 1
    assert outside.float().mean() > 0.05, "the test model should produce values beyond [-1, 1]"
    torch.testing.assert_close(rec.clamp(-1, 1), ref_video, rtol=0, atol=1e-6)
    assert torch.equal(rec[~outside], ref_video[~outside])


def test_unclamped_decoder_passes_gradient_where_diffusers_clamp_would_block_it(wan_folder):
    folder, vae = wan_folder
    model = from_pretrained(folder)
    assert model.last_layer is model.backbone.vae.decoder.conv_out.weight
    z = torch.randn(1, 4, 2, 4, 4)
    vae.zero_grad()
    vae.decode(z).sample.square().sum().backward()
    grad_diffusers = vae.decoder.conv_out.weight.grad.clone()
    out = model.backbone.decode_output(z).sample
    assert (out.detach().abs() > 1).any()
    (grad_clamped,) = torch.autograd.grad(out.clamp(-1, 1).square().sum(), model.last_layer, retain_graph=True)
    (grad_ours,) = torch.autograd.grad(out.square().sum(), model.last_layer)
    torch.testing.assert_close(grad_clamped, grad_diffusers, rtol=1e-4, atol=1e-5)  # same graph up to the clamp
    assert (grad_ours - grad_clamped).norm() > 0.1 * grad_clamped.norm()  # the pixels the clamp cuts off count


def test_frames_that_do_not_fit_1_plus_4k_are_refused_where_diffusers_drops_them(wan_folder):
    folder, vae = wan_folder
    model = from_pretrained(folder)
    x = video(10)
    with torch.no_grad():
        assert vae.encode(x).latent_dist.mean.shape[2] == 3  # diffusers: frame 10 silently ignored
    with pytest.raises(ValueError, match=r"1 \+ 4k frames.*got 10; use 9 or 13"):
        model.encode(x)
    with pytest.raises(ValueError, match="multiples of 8"):
        model.encode(torch.zeros(1, 3, 9, 36, 32))


def test_chunk_is_validated_and_does_not_change_the_result(wan_folder):
    model = from_pretrained(wan_folder[0]).eval()
    x = video(17)
    with torch.no_grad():
        whole = model.encode(x).mean
        assert torch.equal(model.encode(x, chunk=8).mean, whole)  # Wan always streams 1 + 4 + 4 ... frames
        z = whole
        assert torch.equal(model.backbone.decode(z, chunk=2), model.backbone.decode(z))
    with pytest.raises(ValueError, match="multiple of 4"):
        model.encode(x, chunk=6)


# ------------------------------------------------------------------ configs and folders


def test_diffusers_folder_gives_the_wan_config_and_its_latent_statistics(wan_folder):
    folder, _ = wan_folder
    cfg = load_config(folder)
    assert cfg.backbone == TINY and cfg.compression is None
    assert cfg.latent_mean == STATS[0] and cfg.latent_std == STATS[1]
    model = from_pretrained(folder)
    x = video(9)
    with torch.no_grad():
        z = model.encode(x).mode()
        mean, std = torch.tensor(STATS[0]).view(1, 4, 1, 1, 1), torch.tensor(STATS[1]).view(1, 4, 1, 1, 1)
        torch.testing.assert_close(model.diffusion_latent(x), (z - mean) / std)  # Wan's (z - mean) / std


def test_wan_config_reads_wan22_and_rejects_inconsistent_or_misspelt_keys():
    wan22 = {
        "_class_name": "AutoencoderKLWan",
        "z_dim": 48,
        "base_dim": 160,
        "decoder_base_dim": 256,
        "is_residual": True,
        "patch_size": 2,
        "in_channels": 12,
        "out_channels": 12,
        "scale_factor_spatial": 16,
    }
    cfg = WanVAEConfig.from_diffusers(wan22)
    assert cfg.frame_rule.spatial_factor == 16 and cfg.diffusers_kwargs()["in_channels"] == 12
    with pytest.raises(ValueError, match="in_channels=3; with patch_size 2 only 12"):
        WanVAEConfig.from_diffusers({**wan22, "in_channels": 3})
    with pytest.raises(ValueError, match="did you mean 'z_dim'"):
        WanVAEConfig.from_diffusers({"_class_name": "AutoencoderKLWan", "z_dims": 16})
    with pytest.raises(ValueError, match="temporal_downsample"):
        WanVAEConfig(temporal_downsample=(True, True, True))
    with pytest.raises(ValueError, match="did you mean 'latent_channels'"):
        LCVAEConfig.from_dict({"backbone": {"type": "wan", "latent_channel": 16}})


def test_wan_lcvae_config_survives_json_and_save_pretrained(tmp_path):
    cfg = get_preset("lcvae-wan-tiny")
    assert LCVAEConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    torch.manual_seed(0)
    model = LCVAE(cfg)
    perturb(model, 3)
    save_pretrained(model, tmp_path / "m")
    loaded = from_pretrained(tmp_path / "m")
    assert loaded.config == cfg and isinstance(loaded.backbone, WanVAE)
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_presets_match_wan21_and_the_paper_widening():
    wan = get_preset("wan21")
    assert wan.diffusion_channels == 16 and wan.latent_mean is not None and wan.backbone.causal
    lc = get_preset("lcvae-wan21")
    assert lc.backbone.latent_channels == 32 and lc.diffusion_channels == 16 and lc.latent_mean is None
    # 33 frames at 256^2: 9 latent frames; the image frame becomes 2 pseudo-frames of 16 channels
    assert lc.diffusion_shape(33, 256, 256) == (16, 10, 32, 32)
    with torch.device("meta"):
        params = sum(p.numel() for p in WanVAE(wan.backbone).parameters())
    assert 126e6 < params < 128e6  # the released Wan 2.1 VAE has ~127 M parameters


# ------------------------------------------------------------------ widening


def test_widened_model_with_zero_new_decoder_inputs_reconstructs_like_the_original(wan_folder):
    folder, _ = wan_folder
    original = from_pretrained(folder).eval()
    torch.manual_seed(5)
    wide = wan_lcvae_from_diffusers(folder, latent_channels=8).eval()
    assert wide.config.backbone.latent_channels == 8 and wide.config.latent_mean is None  # stats no longer apply
    x = video(9, seed=2)
    with torch.no_grad():
        p0, p1 = original.encode(x), wide.encode(x)
        torch.testing.assert_close(p1.mean[:, :4], p0.mean, rtol=0, atol=1e-6)
        torch.testing.assert_close(p1.logvar[:, :4], p0.logvar, rtol=0, atol=1e-6)
        assert p1.mean[:, 4:].abs().mean() > 1e-3  # the new channels carry encoder features from the start
        torch.testing.assert_close(wide.reconstruct(x), original.reconstruct(x), rtol=0, atol=1e-5)
        # whatever the new channels hold, the decoder ignores them until training moves their weights
        z = torch.randn(1, 8, 3, 4, 4)
        z2 = torch.cat([z[:, :4], torch.randn(1, 4, 3, 4, 4)], dim=1)
        assert torch.equal(wide.backbone.decode(z), wide.backbone.decode(z2))


def test_widening_through_from_pretrained_with_a_compressed_config(wan_folder):
    folder, vae = wan_folder
    cfg = lcvae_config_from_diffusers(json.loads((folder / "config.json").read_text()), 8, "paper")
    assert cfg.compression == CompressionConfig(mask="paper")
    assert cfg.latent_mean is None and cfg.diffusion_channels == 4
    model = from_pretrained(folder, config=cfg)
    bb = model.backbone.vae
    assert torch.equal(bb.decoder.conv_in.weight[:, :4], vae.decoder.conv_in.weight)
    assert bb.decoder.conv_in.weight[:, 4:].abs().max() == 0
    # old log-variance rows moved behind the 8 mean rows; old outputs of quant_conv read old inputs only
    assert torch.equal(bb.encoder.conv_out.weight[8:12], vae.encoder.conv_out.weight[4:8])
    assert torch.equal(bb.quant_conv.weight[8:12, 8:12], vae.quant_conv.weight[4:8, 4:8])
    assert bb.quant_conv.weight[:4, 4:8].abs().max() == 0 and bb.post_quant_conv.weight[:4, 4:].abs().max() == 0
    state = {k.removeprefix("vae."): v for k, v in model.backbone.state_dict().items()}
    with pytest.raises(ValueError, match="cannot narrow"):
        widen_wan_state(state, state, 8, 4)


def test_the_training_recipe_widens_a_diffusers_wan_folder_given_as_preset_and_init_from(wan_folder):
    from lcvae.train.train_vae import init_backbone_from
    from lcvae.train.vae_config import ModelSection, resolve_model_config

    folder = str(wan_folder[0])
    cfg = resolve_model_config(
        ModelSection(preset=folder, latent_channels=8, compression="fixed", mask="paper", init_from=folder)
    )
    assert cfg == lcvae_config_from_diffusers(json.loads((wan_folder[0] / "config.json").read_text()), 8, "paper")
    torch.manual_seed(3)
    model = LCVAE(cfg)
    init_backbone_from(model, folder)
    torch.manual_seed(3)
    direct = wan_lcvae_from_diffusers(folder, 8, "paper")
    a, b = model.state_dict(), direct.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ------------------------------------------------------------------ compression on the Wan latent


def test_compression_round_trip_and_packing_shapes_on_the_wan_latent():
    torch.manual_seed(0)
    model = LCVAE(get_preset("lcvae-wan-tiny")).eval()
    perturb(model, 7)
    x = video(33)
    with torch.no_grad():
        z = model.encode(x).mode()
        assert z.shape == (1, 8, 9, 4, 4)
        comp = model.compressor
        assert torch.allclose(comp.synthesis(comp.analysis(z)), z, atol=1e-5)  # Multi-WT is invertible
        z_hat, coeffs = model.compress(z, return_coefficients=True)
        assert torch.equal(z_hat[:, :, 0], z[:, :, 0])  # the image frame passes uncompressed
        assert torch.allclose(model.compress(z_hat)[0], z_hat, atol=1e-5)  # the mask is a projection
        assert coeffs.groups.shape == (1, 256, 1, 2, 2)
        kept = torch.zeros(256, dtype=torch.bool)
        kept[model.config.compression.resolved_indices(8)] = True
        assert kept.sum() == 128 and coeffs.groups[:, ~kept].abs().max() == 0
        torch.testing.assert_close(coeffs.groups[:, kept], comp.analysis(z).groups[:, kept])
        packed = model.diffusion_latent(x)
        assert packed.shape == (1, 4, 10, 4, 4) == (1, *model.diffusion_shape(33, 32, 32))
        assert packed.numel() == z[:, :, 1:].numel() // 2 + z[:, :, :1].numel()  # half of each group + the image frame
        torch.testing.assert_close(model.diffusion_to_latent(packed), z_hat, atol=1e-5, rtol=0)
        torch.testing.assert_close(model.decode_latent(packed), model.reconstruct(x), atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match=r"1 \+ 32k"):
        model.encode(video(17))


# ------------------------------------------------------------------ training and resume


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory):
    """Two short 40x40 videos (smooth moving patterns), so that data loading costs nothing next to training."""
    from lcvae.data.video import write_video

    folder = tmp_path_factory.mktemp("clips")
    t, y, x = torch.meshgrid(torch.arange(40.0), torch.arange(40.0), torch.arange(40.0), indexing="ij")
    for i in range(2):
        rgb = torch.stack([torch.sin((x + 2 * t + 9 * i) / 6), torch.cos((y - t) / 5), torch.sin((x + y) / 9 + i)], -1)
        write_video(folder / f"clip{i}.mp4", ((rgb + 1) * 127.5).round().to(torch.uint8), 24.0)
    return folder


def _train(clips, out_dir, steps: int, resume: str = "auto"):
    """The VAE training recipe (``lcvae train-vae``) on the tiny Wan LC-VAE preset, unchanged."""
    from lcvae.train.train_vae import main
    from lcvae.train.vae_config import load_train_config

    overrides = [
        "model.preset=lcvae-wan-tiny",
        "data.kind=folder",
        f"data.root={clips}",
        "data.num_frames=33",
        "data.short_side=32",
        "data.crop=32",
        "data.num_workers=0",
        "loss.perceptual_weight=0",
        "disc.preset=tiny",
        "disc.schedule=both",
        "train.batch_size=1",
        f"train.max_steps={steps}",
        "train.ckpt_every=1",
        f"train.out_dir={out_dir}",
        f"train.resume={resume}",
        "log.tensorboard=false",
        "log.every=1",
        "train.threads=1",
    ]
    return main(load_train_config(None, overrides))


def test_two_training_steps_with_the_recipe_and_resume_reproduce_the_uninterrupted_run(tmp_path, clip_folder):
    straight = _train(clip_folder, tmp_path / "a", 2)
    ckpts = sorted((tmp_path / "a" / "checkpoints").glob("step_*"))
    assert straight.step == 2 and [p.name for p in ckpts] == ["step_000000001", "step_000000002"]
    first = load_checkpoint(ckpts[0])
    assert first.state["model_config"] == get_preset("lcvae-wan-tiny").to_dict()
    rows = [json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(r["adaptive_weight"] > 0 for r in rows)  # the GAN gradient reaches last_layer
    torch.manual_seed(0)  # the recipe's train.seed: the same initial model
    init = LCVAE(get_preset("lcvae-wan-tiny")).state_dict()
    moved = [k for k, v in first.weights["model"].items() if not torch.equal(v, init[k])]
    assert any("decoder.conv_out" in k for k in moved) and any("encoder.conv_in" in k for k in moved)

    resumed = _train(clip_folder, tmp_path / "b", 2, resume=str(ckpts[0]))  # step 1 -> 2 in a new process state
    a, b = load_checkpoint(ckpts[1]).weights, load_checkpoint(resumed.checkpoint).weights
    assert resumed.step == 2
    for group in ("model", "disc", "ema"):
        assert all(torch.equal(a[group][k], b[group][k]) for k in a[group]), group
    loaded = LCVAE(LCVAEConfig.from_dict(first.state["model_config"]))
    loaded.load_state_dict(b["model"])
    assert isinstance(loaded.backbone, WanVAE)


# ------------------------------------------------------------------ analysis


def test_latent_analysis_runs_on_wan_latents(clip_folder):
    from lcvae.analysis import analyze_latents, model_latents
    from lcvae.data.datasets import VideoFolder
    from lcvae.wavelets import haar3d

    x = VideoFolder(clip_folder, num_frames=33, short_side=32, crop=32)[0]["video"][None]
    torch.manual_seed(0)
    model = LCVAE(get_preset("wan-tiny")).eval()
    perturb(model, 9)
    result = analyze_latents(model_latents(model, [x]), causal=model.causal)  # what `lcvae analyze` runs
    assert result.channels == 4 and result.causal and result.leaf_energy.shape == (8, 4, 4)
    # independent computation: subband energy of the latent body (image frame excluded), per subband
    with torch.no_grad():
        z = model.encode(x).mode().double()
    sub = haar3d(z[:, :, 1:]).view(1, 8, 4, 4, 2, 2)
    torch.testing.assert_close(result.subband_energy, sub.pow(2).mean((0, 3, 4, 5)), rtol=1e-4, atol=1e-8)
    torch.testing.assert_close(result.head_energy, z[:, :, 0].pow(2).mean((0, 2, 3)), rtol=1e-4, atol=1e-8)
