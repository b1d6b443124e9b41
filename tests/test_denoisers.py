"""The denoiser as a component: diffusers' WanTransformer3DModel behind the Latte interface trains and
samples through the unchanged train-latte loop; its guidance, label dropout, sizes and specs."""

from __future__ import annotations

import pytest
import torch

from lcvae.config import load_config
from lcvae.diffusion import GaussianDiffusion
from lcvae.models.denoisers import WanDenoiser, WanDenoiserConfig, build_denoiser, denoiser_spec, guided_output
from lcvae.models.latte import Latte, LatteConfig
from lcvae.models.lcvae import LCVAE
from lcvae.models.presets import get_preset
from lcvae.sampling import load_denoiser, sample_latents
from lcvae.train.checkpoint import load_checkpoint
from lcvae.train.latte_config import TrainLatteConfig
from lcvae.train.train_latte import main
from test_train_latte import make_vae_and_cache

C, F, H, W = 4, 3, 4, 6


pytestmark = pytest.mark.usefixtures("one_thread")


def _wan(num_classes: int = 3, **kw) -> WanDenoiser:
    torch.manual_seed(0)
    return WanDenoiser(WanDenoiserConfig(in_channels=C, num_frames=F, input_size=(H, W), num_classes=num_classes, **kw))


def _inputs(batch: int = 2):
    g = torch.Generator().manual_seed(1)
    return torch.randn(batch, C, F, H, W, generator=g), torch.randint(0, 1000, (batch,), generator=g)


def test_wan_adapter_trains_and_samples_through_the_loop(tmp_path):
    vae_dir, cache = make_vae_and_cache(tmp_path)
    overrides = [
        f"run_dir={tmp_path / 'run'}",
        f"cache={cache}",
        f"vae={vae_dir}",
        "model.kind=wan",
        "batch_size=2",
        "max_steps=2",
        "log_every=1",
        "ckpt_every=2",
        "sample.every=0",
        "num_workers=0",
        "tensorboard=false",
        "optim.lr=1e-3",
    ]
    last = main(load_config(TrainLatteConfig, None, overrides))
    ckpt = load_checkpoint(last)
    spec = ckpt.state["denoiser"]
    assert spec["kind"] == "wan" and spec["config"]["num_classes"] == 3
    fresh = build_denoiser(spec)
    moved = [k for k, v in fresh.state_dict().items() if not torch.equal(v, ckpt.weights["model"][k])]
    assert any(k.startswith("transformer.blocks.") for k in moved) and "context.weight" in moved

    den = load_denoiser(last)
    shape = LCVAE(get_preset("lcvae-tiny")).config.diffusion_shape(33, 32, 32)
    assert den.latent_shape == shape
    z = sample_latents(
        den.model,
        den.diffusion,
        shape,
        [0, 1],
        seed=0,
        labels=torch.tensor([0, 2]),
        guidance=2.0,
        steps=3,
        method="ddpm",
    )
    assert z.shape == (2, *shape) and torch.isfinite(z).all()


def test_wan_sizes_come_from_the_latent_shape():
    model = _wan(learn_sigma=True)
    tc = model.transformer.config
    assert (tc.in_channels, tc.out_channels, tuple(tc.patch_size)) == (C, 2 * C, (1, 2, 2))
    x, t = _inputs()
    assert model(x, t, torch.tensor([0, 3])).shape == (2, 2 * C, F, H, W)
    assert _wan(num_classes=0, learn_sigma=False)(x, t, None).shape == (2, C, F, H, W)


def test_wan_guidance_scale_one_equals_the_conditional_prediction():
    model = _wan().eval()
    x, t = _inputs()
    y = torch.tensor([1, 2])
    with torch.no_grad():
        cond = model(x, t, y)
        uncond = model(x, t, torch.full_like(y, model.null_class))
        torch.testing.assert_close(model.forward_with_cfg(x, t, y, 1.0), cond, rtol=0, atol=1e-5)
        guided = model.forward_with_cfg(x, t, y, 3.0)
    torch.testing.assert_close(guided[:, :C], uncond[:, :C] + 3.0 * (cond[:, :C] - uncond[:, :C]), rtol=0, atol=1e-5)
    torch.testing.assert_close(guided[:, C:], cond[:, C:], rtol=0, atol=1e-5)


def test_guided_output_matches_latte_cfg():
    torch.manual_seed(0)
    latte = Latte(LatteConfig.from_preset("tiny", in_channels=C, num_frames=F, input_size=(H, W), num_classes=3)).eval()
    with torch.no_grad():
        for p in latte.parameters():
            p.normal_(0, 0.2)
        x, t = _inputs()
        y = torch.tensor([0, 1])
        out = latte(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, torch.full_like(y, 3)]))
        torch.testing.assert_close(guided_output(*out.chunk(2), C, 2.5), latte.forward_with_cfg(x, t, y, 2.5))


def test_wan_label_dropout_uses_the_null_class_in_training_only():
    model = _wan(class_dropout_prob=1.0)
    x, t = _inputs()
    y = torch.tensor([0, 1])
    with torch.no_grad():
        dropped = model.train()(x, t, y)
        model.eval()
        torch.testing.assert_close(dropped, model(x, t, torch.full_like(y, 3)), rtol=0, atol=1e-6)
        assert not torch.allclose(model(x, t, y), dropped, atol=1e-4)


def test_specs_rebuild_the_same_denoiser():
    for model in (_wan(), Latte(LatteConfig.from_preset("tiny", in_channels=C, num_frames=F, input_size=(H, W)))):
        rebuilt = build_denoiser(denoiser_spec(model))
        assert type(rebuilt) is type(model) and rebuilt.config == model.config
        rebuilt.load_state_dict(model.state_dict(), strict=True)


def test_wan_fixed_variance_trains_on_the_mse():
    model = _wan(learn_sigma=False).train()
    x0, t = _inputs()
    losses = GaussianDiffusion(learn_sigma=False).training_losses(
        lambda x, tt: model(x, tt, torch.tensor([0, 1])), x0, t
    )
    assert torch.equal(losses.loss, losses.mse) and float(losses.vb.abs().sum()) == 0


def test_bad_wan_inputs_are_explained():
    x, t = _inputs()
    with pytest.raises(ValueError, match="unconditional"):
        _wan(num_classes=0)(x, t, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="class-conditional"):
        _wan()(x, t, None)
    with pytest.raises(ValueError, match=r"labels must be in \[0, 3\]"):
        _wan()(x, t, torch.tensor([0, 4]))
    with pytest.raises(ValueError, match="expects latents"):
        _wan()(x[:, :, :2], t, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="head_dim must be even"):
        WanDenoiserConfig(in_channels=C, num_frames=F, input_size=(H, W), head_dim=9)
    with pytest.raises(ValueError, match="divisible by patch_size"):
        WanDenoiserConfig(in_channels=C, num_frames=F, input_size=(5, 6))
    with pytest.raises(ValueError, match="kind must be one of"):
        build_denoiser({"kind": "unet", "config": {}})
