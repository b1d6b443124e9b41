"""The 2025-26 video VAEs as LC-VAE backbones: Wan 2.2 (4x16x16), HunyuanVideo 1.5 (4x16x16) and
LTX-2 (8x32x32), each a tiny random config built through the same code path as its preset.

Checked against the diffusers model's own encode/decode, the frame and size rules (errors name the
nearest valid values), the diffusion-latent shapes documented in docs/backbones.md, chunking, the
folder loaders with their latent statistics, and the refusal of MiniMax-H3. One CPU thread.
"""

from __future__ import annotations

import inspect

import pytest
import torch

from lcvae.masks import CompressionConfig
from lcvae.models.diffusers_vae import DiffusersVAEConfig, lcvae_from_diffusers_folder
from lcvae.models.io import from_pretrained, load_config
from lcvae.models.lcvae import LCVAE, LCVAEConfig
from lcvae.models.presets import PRESETS
from lcvae.models.wan import WanVAEConfig

diffusers = pytest.importorskip("diffusers")

pytestmark = pytest.mark.usefixtures("one_thread")

PAPER = CompressionConfig(mask="paper")
WAN22_TINY = WanVAEConfig(
    latent_channels=8,
    base_dim=8,
    decoder_base_dim=12,
    dim_mult=(1, 2, 2, 2),
    num_res_blocks=1,
    is_residual=True,
    patch_size=2,
)
HV15_KWARGS = {"latent_channels": 8, "block_out_channels": [8, 8, 16, 16, 16], "layers_per_block": 1}
LTX2_KWARGS = {
    "latent_channels": 8,
    "block_out_channels": [8, 16, 32, 64],
    "decoder_block_out_channels": [8, 16, 32],
    "layers_per_block": [1, 1, 1, 1, 1],
    "decoder_layers_per_block": [1, 1, 1, 1],
    "decoder_causal": False,
}  # as released: causal encoder, non-causal decoder
TINY = {
    "wan22": WAN22_TINY,
    "hunyuanvideo15": DiffusersVAEConfig("AutoencoderKLHunyuanVideo15", HV15_KWARGS, latent_channels=8),
    "ltx2": DiffusersVAEConfig("AutoencoderKLLTX2Video", LTX2_KWARGS, latent_channels=8),
}
# (temporal, spatial) factors; the smallest frame size each decodes (LTX-2's decoder reflect-pads 1 latent pixel)
FACTORS = {"wan22": (4, 16), "hunyuanvideo15": (4, 16), "ltx2": (8, 32)}
SIZE = {"wan22": 32, "hunyuanvideo15": 32, "ltx2": 64}


def video(frames: int, size: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(1, 3, frames, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def tiny(name: str, compression: CompressionConfig | None = None) -> LCVAE:
    """A tiny model with perturbed random weights (so no layer is left at an exact zero init)."""
    torch.manual_seed(0)
    model = LCVAE(LCVAEConfig(backbone=TINY[name], compression=compression))
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.02)
    return model.eval()


def twin_of(model: LCVAE):
    """The diffusers model built apart from ours, with our weights."""
    bb = model.config.backbone
    kwargs = bb.diffusers_kwargs() if isinstance(bb, WanVAEConfig) else bb.model_config
    cls = "AutoencoderKLWan" if isinstance(bb, WanVAEConfig) else bb.model_class
    twin = getattr(diffusers, cls)(**kwargs).eval()
    twin.load_state_dict({k.removeprefix("backbone.vae."): v for k, v in model.state_dict().items()})
    return twin


@pytest.mark.parametrize("name", sorted(TINY))
def test_encode_and_decode_equal_the_diffusers_models_own(name):
    model, t_factor, s_factor = tiny(name), *FACTORS[name]
    twin = twin_of(model)
    size, frames = SIZE[name], 1 + 2 * t_factor
    x = video(frames, size)
    with torch.no_grad():
        ref = twin.encode(x).latent_dist
        post = model.encode(x)
        assert post.mean.shape == (1, 8, 3, size // s_factor, size // s_factor)
        assert (post.mean - ref.mean).abs().max() <= 1e-6
        assert (post.logvar - ref.logvar).abs().max() <= 1e-6
        ours, theirs = model.reconstruct(x), twin.decode(ref.mode()).sample
    assert ours.shape == x.shape
    if name == "wan22":  # diffusers clamps Wan's output; ours is unclamped (the training gradient needs it)
        ours = ours.clamp(-1, 1)
    assert (ours - theirs).abs().max() <= 1e-6


@pytest.mark.parametrize(
    ("name", "compressed", "good", "bad", "nearest"),
    [
        ("wan22", False, 9, 8, "use 5 or 9"),  # Wan itself would silently drop frames 6-8
        ("hunyuanvideo15", False, 5, 7, "use 5 or 9"),
        ("ltx2", False, 17, 16, "use 9 or 17"),
        ("wan22", True, 33, 20, "use 1 or 33"),
        ("hunyuanvideo15", True, 65, 40, "use 33 or 65"),
        ("ltx2", True, 65, 60, "use 1 or 65"),
    ],
)
def test_frame_rules_accept_valid_counts_and_name_the_nearest_ones(name, compressed, good, bad, nearest):
    cfg = LCVAEConfig(backbone=TINY[name], compression=PAPER if compressed else None)
    rule = cfg.frame_rule
    assert rule.is_valid(good) and not rule.is_valid(bad)
    with pytest.raises(ValueError, match=f"got {bad}; {nearest}"):
        rule.check_frames(bad)
    step = FACTORS[name][1] * (2 if compressed else 1)  # 2 x 2 latent pixels per compressor group
    assert rule.pixel_step == step
    with pytest.raises(ValueError, match=f"multiples of {step}, got {step + 8}x{step}"):
        rule.check_size(step + 8, step)


def test_an_invalid_video_is_refused_before_the_model_runs():
    with pytest.raises(ValueError, match="got 8; use 5 or 9"):
        tiny("wan22").encode(video(8, 32))
    with pytest.raises(ValueError, match="multiples of 64"):
        tiny("ltx2", PAPER).encode(video(65, 32))


@pytest.mark.parametrize(
    ("name", "frames", "want"),
    [
        ("wan22", 33, (1, 4, 10, 2, 2)),  # 9 latent frames; the image frame becomes 2 pseudo-frames
        ("hunyuanvideo15", 33, (1, 4, 10, 2, 2)),
        ("ltx2", 65, (1, 4, 10, 2, 2)),
    ],
)
def test_lc_on_top_gives_the_documented_diffusion_latent(name, frames, want):
    model = tiny(name, PAPER)
    size = 2 * FACTORS[name][1]
    x = video(frames, size, seed=2)
    with torch.no_grad():
        latent = model.diffusion_latent(x)
        assert latent.shape == want == (1, *model.diffusion_shape(frames, size, size))
        out = model.decode_latent(latent)
    assert out.shape == x.shape and torch.isfinite(out).all()


@pytest.mark.parametrize(
    ("preset", "latent", "diffusion", "shape"),
    [
        ("lcvae-wan21", 32, 16, (16, 10, 32, 32)),
        ("wan22", 48, 48, (48, 9, 16, 16)),
        ("lcvae-wan22", 48, 24, (24, 10, 16, 16)),  # MiniMax-H3's budget: 24 channels at 4x16x16
        ("hunyuanvideo15", 32, 32, (32, 9, 16, 16)),
        ("lcvae-hunyuanvideo15", 32, 16, (16, 10, 16, 16)),
        ("ltx2", 128, 128, (128, 5, 8, 8)),
        ("lcvae-ltx2", 128, 64, None),  # 33 frames do not fit 1 + 64k
    ],
)
def test_presets_give_the_documented_sizes_at_33x256(preset, latent, diffusion, shape):
    cfg = PRESETS[preset]
    assert (cfg.backbone.latent_channels, cfg.diffusion_channels) == (latent, diffusion)
    if shape is None:
        with pytest.raises(ValueError, match="use 1 or 65"):
            cfg.diffusion_shape(33, 256, 256)
        assert cfg.diffusion_shape(65, 256, 256) == (64, 10, 8, 8)  # 9 latent frames, 256 / 32
    else:
        assert cfg.diffusion_shape(33, 256, 256) == shape


@pytest.mark.parametrize("preset", ["wan22", "hunyuanvideo15", "ltx2"])
def test_presets_are_real_constructor_configs(preset):
    bb = PRESETS[preset].backbone
    kwargs = bb.diffusers_kwargs() if isinstance(bb, WanVAEConfig) else bb.model_config
    cls = getattr(diffusers, "AutoencoderKLWan" if isinstance(bb, WanVAEConfig) else bb.model_class)
    params = inspect.signature(cls.__init__).parameters
    assert set(kwargs) <= set(params), set(kwargs) - set(params)
    assert (bb.frame_rule.temporal_factor, bb.frame_rule.spatial_factor) == FACTORS[preset]


def test_wan22_streams_exactly_and_the_others_refuse_chunks():
    model = tiny("wan22", PAPER)
    x = video(33, 32, seed=4)
    with torch.no_grad():
        z = model.encode(x).mode()
        torch.testing.assert_close(model.encode(x, chunk=8).mode(), z, rtol=0, atol=0)
        torch.testing.assert_close(model.backbone.decode(z, chunk=1), model.backbone.decode(z), rtol=0, atol=0)
    with pytest.raises(ValueError, match="multiple of 4 frames, got 6"):
        model.encode(x, chunk=6)
    for name in ("hunyuanvideo15", "ltx2"):
        with pytest.raises(ValueError, match="leave chunk unset"):
            tiny(name).backbone.decode(torch.zeros(1, 8, 2, 2, 2), chunk=1)


def test_spatial_tiling_uses_the_backbones_factor():
    model = tiny("hunyuanvideo15")
    x = video(5, 64, seed=6)
    with torch.no_grad():
        z = model.encode(x, tile=32, overlap=16).mode()
        out = model.reconstruct(x, tile=32, overlap=16)
    assert z.shape == (1, 8, 2, 4, 4) and out.shape == x.shape


def test_wan22_folder_loads_with_its_statistics(tmp_path):
    model = tiny("wan22")
    twin = twin_of(model)
    mean, std = [0.1 * i for i in range(8)], [1.0 + 0.1 * i for i in range(8)]
    twin.register_to_config(latents_mean=mean, latents_std=std)
    twin.save_pretrained(tmp_path / "vae")
    cfg = load_config(tmp_path / "vae")
    assert cfg.backbone == WAN22_TINY and (cfg.latent_mean, cfg.latent_std) == (mean, std)
    loaded = from_pretrained(tmp_path / "vae").eval()
    x = video(5, 32, seed=7)
    with torch.no_grad():
        torch.testing.assert_close(loaded.reconstruct(x), model.reconstruct(x), rtol=0, atol=0)


def test_ltx2_folder_takes_its_factors_and_the_statistics_in_its_weights(tmp_path):
    twin = twin_of(tiny("ltx2"))
    with torch.no_grad():
        twin.latents_mean.copy_(torch.linspace(-1, 1, 8))
        twin.latents_std.copy_(torch.linspace(0.5, 2, 8))
    twin.save_pretrained(tmp_path / "ltx2")
    model = lcvae_from_diffusers_folder(tmp_path / "ltx2").eval()
    bb = model.config.backbone
    assert (bb.temporal_factor, bb.spatial_factor) == (8, 32)
    torch.testing.assert_close(torch.tensor(model.config.latent_std), torch.linspace(0.5, 2, 8))
    x = video(9, 64, seed=8)
    with torch.no_grad():
        z = twin.encode(x).latent_dist.mode()
        want = (z - torch.linspace(-1, 1, 8).view(1, 8, 1, 1, 1)) / torch.linspace(0.5, 2, 8).view(1, 8, 1, 1, 1)
        assert (model.diffusion_latent(x) - want).abs().max() <= 1e-6
    compressed = lcvae_from_diffusers_folder(tmp_path / "ltx2", compression=PAPER)
    assert compressed.config.latent_mean is None  # the compressed latent's statistics are measured anew


def test_minimax_h3_is_refused_with_the_reason():
    with pytest.raises(ValueError, match=r"AutoencoderKLMiniMaxH3 cannot be an LC-VAE backbone.*17n \+ 5"):
        DiffusersVAEConfig("AutoencoderKLMiniMaxH3", latent_channels=24)


def test_factors_that_contradict_the_model_config_are_refused():
    with pytest.raises(
        ValueError, match="spatial_factor=8, but this AutoencoderKLHunyuanVideo15 config compresses by 16"
    ):
        DiffusersVAEConfig("AutoencoderKLHunyuanVideo15", HV15_KWARGS, latent_channels=8, spatial_factor=8)
    cfg = DiffusersVAEConfig("AutoencoderKLHunyuanVideo15", HV15_KWARGS, latent_channels=8)
    assert DiffusersVAEConfig.from_dict(cfg.to_dict()) == cfg


def test_a_preset_style_config_loads_the_weights_of_a_diffusers_folder(tmp_path):
    """What `lcvae study` / `train-vae model.init_from=` do with a preset and the model's folder."""
    model = tiny("hunyuanvideo15", PAPER)
    twin_of(model).save_pretrained(tmp_path / "vae")
    loaded = from_pretrained(tmp_path / "vae", config=LCVAEConfig(backbone=TINY["hunyuanvideo15"], compression=PAPER))
    x = video(33, 32, seed=9)
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval().diffusion_latent(x), model.diffusion_latent(x), rtol=0, atol=0)


@pytest.mark.parametrize("name", sorted(TINY))
def test_the_lc_training_path_backpropagates_into_both_halves(name):
    model = tiny(name, PAPER).train()
    frames, size = 1 + 8 * FACTORS[name][0], 2 * FACTORS[name][1]
    x = video(frames, size, seed=10)
    out = model(x, generator=torch.Generator().manual_seed(0))
    loss = (out.reconstruction - x).abs().mean() + 1e-6 * out.posterior.kl().mean()
    loss.backward()
    enc = [p.grad for n, p in model.named_parameters() if ".encoder." in n and p.grad is not None]
    dec = [p.grad for n, p in model.named_parameters() if ".decoder." in n and p.grad is not None]
    assert enc and dec and torch.isfinite(loss)
    assert max(g.abs().max() for g in enc) > 0 and max(g.abs().max() for g in dec) > 0
