"""AutoencoderKLLCVAE: the diffusers interface around LCVAE, against LCVAE's own outputs."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest
import torch

pytest.importorskip("diffusers")

from diffusers.models.autoencoders.vae import DecoderOutput, DiagonalGaussianDistribution  # noqa: E402
from diffusers.models.modeling_outputs import AutoencoderKLOutput  # noqa: E402

from lcvae import AutoencoderKLLCVAE  # noqa: E402
from lcvae.models.lcvae import LCVAE  # noqa: E402
from lcvae.models.presets import get_preset  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


def _pair(
    preset: str, seed: int = 0, mean: list[float] | None = None, std: list[float] | None = None
) -> tuple[LCVAE, AutoencoderKLLCVAE]:
    """A random LCVAE (latent statistics ``mean``/``std``) and its diffusers wrapper."""
    torch.manual_seed(seed)
    model = LCVAE(dataclasses.replace(get_preset(preset), latent_mean=mean, latent_std=std)).eval()
    return model, AutoencoderKLLCVAE.from_lcvae(model).eval()


def _video(frames: int, size: int, batch: int = 1, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, frames, size, size, generator=g) * 2 - 1


def test_import_lcvae_does_not_import_diffusers():
    code = "import sys, lcvae; assert 'diffusers' not in sys.modules, 'diffusers imported'; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


@pytest.mark.parametrize("preset, frames", [("lcvae-tiny", 33), ("wfvae-tiny", 9), ("lcvae-tiny-noncausal", 32)])
def test_encode_decode_equal_lcvae(preset, frames):
    model, vae = _pair(preset)
    x = _video(frames, 16)
    with torch.no_grad():
        out = vae.encode(x)
        z = out.latent_dist.mode()
        video = vae.decode(z).sample
        want_z = model.diffusion_latent(x)  # identity statistics: the un-normalised packed latent
        want_video = model.reconstruct(x)
        noise = torch.randn_like(z)
        decoded_noise, want_noise = vae.decode(noise).sample, model.decode_latent(noise)
    assert isinstance(out, AutoencoderKLOutput) and isinstance(out.latent_dist, DiagonalGaussianDistribution)
    assert tuple(z.shape[1:]) == vae.latent_shape(frames, 16, 16) == model.diffusion_shape(frames, 16, 16)
    assert (z - want_z).abs().max() <= 1e-5
    assert video.shape == x.shape and (video - want_video).abs().max() <= 1e-5
    assert (decoded_noise - want_noise).abs().max() <= 1e-5


def test_return_dict_false_gives_tuples_and_forward_is_the_mode_round_trip():
    model, vae = _pair("lcvae-tiny")
    x = _video(33, 16)
    with torch.no_grad():
        (posterior,) = vae.encode(x, return_dict=False)
        (video,) = vae.decode(posterior.mode(), return_dict=False)
        full = vae(x)
        (full_tuple,) = vae(x, return_dict=False)
        sampled = vae(x, sample_posterior=True, generator=torch.Generator().manual_seed(0)).sample
        want = model.reconstruct(x)
    assert isinstance(posterior, DiagonalGaussianDistribution) and isinstance(full, DecoderOutput)
    assert torch.equal(video, full.sample) and torch.equal(video, full_tuple)
    assert (video - want).abs().max() <= 1e-5
    assert sampled.shape == x.shape and not torch.equal(sampled, video)


def _pack_matrix(vae: AutoencoderKLLCVAE, latent_shape: tuple[int, ...]) -> torch.Tensor:
    """The packing map latent -> diffusion latent as an explicit matrix (outputs x inputs)."""
    n = torch.Size(latent_shape).numel()
    basis = torch.eye(n, dtype=torch.float64).view(n, *latent_shape)
    comp = vae.lcvae.compressor.to(torch.float64)
    packed = comp.pack(comp.analysis(basis))
    return packed.reshape(n, -1).t()


@pytest.mark.parametrize("preset, frames", [("lcvae-tiny", 33), ("lcvae-tiny-noncausal", 32)])
def test_packed_posterior_variance_is_the_exact_marginal(preset, frames):
    model, vae = _pair(preset, seed=3)
    x = _video(frames, 16, seed=4)
    with torch.no_grad():
        full = model.encode(x)
        packed = vae.encode(x).latent_dist
    a = _pack_matrix(vae, tuple(full.mean.shape[1:]))
    assert torch.allclose(a @ a.t(), torch.eye(a.shape[0], dtype=a.dtype), atol=1e-12)  # orthonormal selection
    var = full.std.double().square().flatten()
    want_var = (a.square() @ var).view(packed.var.shape)
    want_mean = (a @ full.mean.double().flatten()).view(packed.mean.shape)
    assert torch.allclose(packed.var.double(), want_var, rtol=1e-4)
    assert torch.allclose(packed.mean.double(), want_mean, atol=1e-5)
    # the variance differs from one coefficient to another (so the test could catch a plain pack of std)
    assert want_var.std() > 1e-3 * want_var.mean()


def test_slicing_equals_whole_batch():
    _, vae = _pair("lcvae-tiny")
    x = _video(33, 16, batch=2)
    with torch.no_grad():
        z = vae.encode(x).latent_dist.mode()
        video = vae.decode(z).sample
        vae.enable_slicing()
        z_sliced = vae.encode(x).latent_dist.mode()
        video_sliced = vae.decode(z).sample
        vae.disable_slicing()
    assert (z - z_sliced).abs().max() <= 1e-5 and (video - video_sliced).abs().max() <= 1e-5


def test_tiling_is_lcvae_tiled_path_on_large_frames_only():
    # How close tiles come to whole frames depends on trained weights (benchmarks/bench_tiling.py measures
    # it); with random weights only the equality with LCVAE's own tiled path is a meaningful check.
    model, vae = _pair("wfvae-tiny")
    x = _video(5, 48)
    with torch.no_grad():
        whole = vae(x).sample
        vae.enable_tiling(tile_sample_min_size=32, tile_sample_overlap=16)
        z = vae.encode(x).latent_dist.mode()
        tiled = vae.decode(z).sample
        want = model.reconstruct(x, tile=32, overlap=16)
        small = vae(_video(5, 32)).sample  # frames within one tile are not tiled
        vae.disable_tiling()
        small_whole = vae(_video(5, 32)).sample
    assert (tiled - want).abs().max() <= 1e-5
    assert torch.equal(small, small_whole)
    assert (tiled - whole).abs().max() > 1e-3  # tiling did run
    with pytest.raises(ValueError, match="multiples of 8"):
        vae.enable_tiling(tile_sample_min_size=30)


def test_chunked_encode_and_decode_are_exact():
    _, vae = _pair("lcvae-tiny")
    x = _video(33, 16)
    with torch.no_grad():
        z = vae.encode(x).latent_dist.mode()
        video = vae.decode(z).sample
        vae.enable_chunking(encode_chunk=8, decode_chunk=2)
        z_chunked = vae.encode(x).latent_dist.mode()
        video_chunked = vae.decode(z).sample
        vae.disable_chunking()
    assert (z - z_chunked).abs().max() <= 1e-5 and (video - video_chunked).abs().max() <= 1e-5
    _, noncausal = _pair("lcvae-tiny-noncausal")
    with pytest.raises(ValueError, match="causal"):
        noncausal.enable_chunking()


def test_save_load_round_trip_in_diffusers_layout(tmp_path):
    _, vae = _pair("lcvae-tiny", mean=[0.1, -0.2, 0.3, 0.0], std=[1.5, 0.5, 2.0, 1.0])
    vae.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["_class_name"] == "AutoencoderKLLCVAE" and saved["latents_std"] == [1.5, 0.5, 2.0, 1.0]
    assert (tmp_path / "diffusion_pytorch_model.safetensors").is_file()
    loaded = AutoencoderKLLCVAE.from_pretrained(tmp_path).eval()
    assert loaded.config.latents_mean == [0.1, -0.2, 0.3, 0.0]
    x = _video(33, 16)
    with torch.no_grad():
        assert torch.equal(vae(x).sample, loaded(x).sample)
    half = AutoencoderKLLCVAE.from_pretrained(tmp_path, torch_dtype=torch.bfloat16).eval()
    assert {p.dtype for p in half.parameters()} == {torch.bfloat16}
    with torch.no_grad():
        z = half.encode(x.bfloat16()).latent_dist.mode()
        video = half.decode(z).sample
        want = vae(x).sample
    assert z.dtype == video.dtype == torch.bfloat16 and torch.isfinite(video).all()
    err = (video.float() - want).square().mean() / want.square().mean()
    assert err < 1e-3  # bf16 rounding, not a wrong computation (a broken path gives ~1)


def test_conversion_to_and_from_our_format_keeps_weights_and_statistics(tmp_path):
    from lcvae.models.io import from_pretrained, save_pretrained

    _, vae = _pair("lcvae-tiny", seed=5, mean=[1.0, 2.0, 3.0, 4.0], std=[2.0, 2.0, 4.0, 4.0])
    assert vae.config.latents_mean == [1.0, 2.0, 3.0, 4.0] and vae.config.lcvae_config["latent_mean"] is None
    save_pretrained(vae.to_lcvae(), tmp_path)
    back = from_pretrained(tmp_path).eval()
    assert back.config.latent_std == [2.0, 2.0, 4.0, 4.0]
    x = _video(33, 16)
    with torch.no_grad():
        z = vae.encode(x).latent_dist.mode()
        mean = torch.tensor(vae.config.latents_mean).view(1, -1, 1, 1, 1)
        std = torch.tensor(vae.config.latents_std).view(1, -1, 1, 1, 1)
        assert (back.diffusion_latent(x) - (z - mean) / std).abs().max() <= 1e-5
        assert (back.reconstruct(x) - vae(x).sample).abs().max() <= 1e-5


def test_rules_and_bad_configs_are_reported():
    _, vae = _pair("lcvae-tiny")
    rule = vae.frame_rule
    assert (vae.causal, rule.frame_step, rule.pixel_step, vae.latent_channels) == (True, 32, 16, 4)
    assert vae.latent_shape(65, 32, 48) == (4, 2 + 16, 4, 6)
    assert (vae.spatial_compression_ratio, vae.temporal_compression_ratio) == (8, 4)
    with pytest.raises(ValueError, match="1 \\+ 32k"):
        vae.encode(_video(17, 16))
    with pytest.raises(ValueError, match="diffusion latent"):
        vae.decode(torch.zeros(1, 8, 10, 2, 2))
    cfg = get_preset("lcvae-tiny").to_dict()
    with pytest.raises(ValueError, match="4 values"):
        AutoencoderKLLCVAE(lcvae_config=cfg, latents_mean=[0.0] * 8, latents_std=[1.0] * 8)


def test_wan_transformer_denoises_in_the_lcvae_latent_and_decodes_to_video():
    """The README example: a tiny random Wan DiT and a flow-matching scheduler in the packed latent."""
    from diffusers import FlowMatchEulerDiscreteScheduler, WanTransformer3DModel

    model, vae = _pair("lcvae-tiny", seed=7)
    frames, size = 33, 32
    x = _video(frames, size, seed=8)
    with torch.no_grad():
        latent = vae.encode(x).latent_dist.mode()
        assert (vae.decode(latent).sample - model.reconstruct(x)).abs().max() <= 1e-5
    # per-channel statistics as `lcvae latent-stats` would store them (here of one clip)
    mean, std = latent.mean(dim=(0, 2, 3, 4)).tolist(), latent.std(dim=(0, 2, 3, 4)).tolist()
    vae.register_to_config(latents_mean=mean, latents_std=std)

    torch.manual_seed(9)
    channels, latent_frames, h, w = vae.latent_shape(frames, size, size)
    transformer = WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=8,
        in_channels=channels,
        out_channels=channels,
        text_dim=16,
        freq_dim=16,
        ffn_dim=32,
        num_layers=1,
        rope_max_seq_len=32,
    ).eval()
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0)
    scheduler.set_timesteps(3)
    text = torch.randn(1, 5, 16)
    latents = torch.randn(1, channels, latent_frames, h, w, generator=torch.Generator().manual_seed(10))
    with torch.no_grad():
        for t in scheduler.timesteps:
            velocity = transformer(latents, t.expand(1), text, return_dict=False)[0]
            assert velocity.shape == latents.shape
            latents = scheduler.step(velocity, t, latents, return_dict=False)[0]
        # un-normalise as diffusers' Wan pipeline does, then decode
        m = torch.tensor(vae.config.latents_mean).view(1, -1, 1, 1, 1)
        s = torch.tensor(vae.config.latents_std).view(1, -1, 1, 1, 1)
        video = vae.decode(latents * s + m).sample
    assert video.shape == (1, 3, frames, size, size) and torch.isfinite(video).all()


def test_wan_backbone_lcvae_saves_and_loads(tmp_path):
    model, vae = _pair("lcvae-wan-tiny", seed=11)
    vae.save_pretrained(tmp_path)
    loaded = AutoencoderKLLCVAE.from_pretrained(tmp_path).eval()
    x = _video(33, 16, seed=12)
    with torch.no_grad():
        video = loaded(x).sample
        want = model.reconstruct(x)
    assert (video - want).abs().max() <= 1e-5
