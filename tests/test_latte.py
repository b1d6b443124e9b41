"""Latte: preset sizes, shapes, adaLN-Zero initialisation, guidance, which axes each block mixes,
label dropout, gradient checkpointing against the plain path, embeddings and config strictness."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lcvae.models.latte import LATTE_PRESETS, Latte, LatteConfig, SelfAttention, sincos_1d, sincos_2d

C, F, H, W = 4, 3, 8, 6  # a non-square latent catches row/column mix-ups


pytestmark = pytest.mark.usefixtures("one_thread")


def _config(preset: str = "tiny", **overrides) -> LatteConfig:
    return LatteConfig.from_preset(preset, in_channels=C, num_frames=F, input_size=(H, W), **overrides)


def _randomise(model: Latte, std: float = 0.2, seed: int = 0) -> Latte:
    """Non-zero weights everywhere: at initialisation every block is the identity and the output is 0."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std)
    return model


def _inputs(batch: int = 2, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, C, F, H, W, generator=g)
    t = torch.randint(0, 1000, (batch,), generator=g)
    return x, t


def test_presets_have_the_paper_sizes():
    expected = {"S": (12, 384, 6), "B": (12, 768, 12), "L": (24, 1024, 16), "XL": (28, 1152, 16)}
    for name, (depth, width, heads) in expected.items():
        cfg = _config(name)
        assert (cfg.depth, cfg.hidden_size, cfg.num_heads, cfg.patch_size) == (depth, width, heads, 2)


def test_depth_counts_spatial_and_temporal_blocks():
    model = Latte(_config("XL", hidden_size=16 * 4))  # XL depth and heads, tiny width
    assert len(model.spatial_blocks) == len(model.temporal_blocks) == 14


@pytest.mark.parametrize("preset", ["S", "B", "L", "XL", "tiny", "tiny-deep"])
@pytest.mark.parametrize("num_classes", [0, 5])
def test_output_shape_for_every_preset(preset, num_classes):
    heads = LATTE_PRESETS[preset]["num_heads"]
    # tiny width and depth, the preset's head count (8 channels per head)
    cfg = _config(preset, hidden_size=8 * heads, depth=2, num_classes=num_classes)
    model = _randomise(Latte(cfg))
    x, t = _inputs()
    y = torch.tensor([0, num_classes]) if num_classes else None
    out = model(x, t, y)
    assert out.shape == (2, 2 * C, F, H, W)
    assert torch.isfinite(out).all() and out.abs().max() > 0


def test_fixed_sigma_outputs_c_channels():
    model = _randomise(Latte(_config(learn_sigma=False)))
    assert model(*_inputs()).shape == (2, C, F, H, W)


def test_zero_initialised_model_outputs_zeros():
    torch.manual_seed(0)
    model = Latte(_config("tiny-deep", num_classes=3))
    x, t = _inputs()
    out = model(x * 10, t, torch.tensor([1, 3]))
    assert torch.equal(out, torch.zeros_like(out))


def test_guidance_scale_one_equals_conditional_prediction():
    model = _randomise(Latte(_config(num_classes=4))).eval()
    x, t = _inputs()
    y = torch.tensor([1, 2])
    cond = model(x, t, y)
    uncond = model(x, t, torch.full_like(y, model.null_class))
    assert (cond - uncond).abs().max() > 1e-2  # the label matters, so the check below means something
    torch.testing.assert_close(model.forward_with_cfg(x, t, y, 1.0), cond, rtol=0, atol=1e-5)


def test_guidance_extrapolates_epsilon_and_keeps_conditional_variance():
    model = _randomise(Latte(_config(num_classes=4))).eval()
    x, t = _inputs()
    y = torch.tensor([3, 0])
    cond = model(x, t, y)
    uncond = model(x, t, torch.full_like(y, model.null_class))
    guided = model.forward_with_cfg(x, t, y, 4.0)
    expected_eps = uncond[:, :C] + 4.0 * (cond[:, :C] - uncond[:, :C])
    torch.testing.assert_close(guided[:, :C], expected_eps, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(guided[:, C:], cond[:, C:], rtol=1e-5, atol=1e-5)


def _gate_off(blocks) -> None:
    """Zero a block's adaLN regression: gates 0 make the block exactly the identity."""
    with torch.no_grad():
        for block in blocks:
            block.adaLN_modulation[-1].weight.zero_()
            block.adaLN_modulation[-1].bias.zero_()


def test_temporal_blocks_mix_frames_and_spatial_blocks_do_not():
    full = _randomise(Latte(_config("tiny-deep")))
    spatial_only = _randomise(Latte(_config("tiny-deep")))
    _gate_off(spatial_only.temporal_blocks)
    x, t = _inputs()
    x2 = x.clone()
    x2[:, :, 0] += 1.0  # perturb frame 0 only
    for model, mixes in ((spatial_only, False), (full, True)):
        delta = (model(x2, t) - model(x, t)).abs()
        assert delta[:, :, 0].max() > 1e-3
        if mixes:
            assert delta[:, :, 1:].amax(dim=(0, 1, 3, 4)).min() > 1e-4  # every other frame moved
        else:
            assert torch.equal(delta[:, :, 1:], torch.zeros_like(delta[:, :, 1:]))


def test_spatial_blocks_mix_patches_and_temporal_blocks_do_not():
    full = _randomise(Latte(_config("tiny-deep")))
    temporal_only = _randomise(Latte(_config("tiny-deep")))
    _gate_off(temporal_only.spatial_blocks)
    x, t = _inputs()
    x2 = x.clone()
    x2[:, :, 1, 0:2, 0:2] += 1.0  # one 2x2 patch (top-left) of frame 1
    outside = torch.ones(H, W, dtype=torch.bool)
    outside[0:2, 0:2] = False
    for model, mixes in ((temporal_only, False), (full, True)):
        delta = (model(x2, t) - model(x, t)).abs()
        assert delta[:, :, :, 0:2, 0:2].amax(dim=(0, 1, 3, 4)).min() > 1e-4  # that patch, in every frame
        moved = delta[..., outside]
        if mixes:
            assert moved.max() > 1e-3
        else:
            assert torch.equal(moved, torch.zeros_like(moved))


def test_label_dropout_uses_null_class_in_training_only():
    model = _randomise(Latte(_config(num_classes=3, class_dropout_prob=1.0)))
    x, t = _inputs()
    y = torch.tensor([0, 2])
    model.eval()
    null_out = model(x, t, torch.full_like(y, 3))
    cond_out = model(x, t, y)
    model.train()
    torch.testing.assert_close(model(x, t, y), null_out, rtol=0, atol=0)
    assert (cond_out - null_out).abs().max() > 1e-2


def test_gradient_checkpointing_matches_plain_gradients():
    plain = _randomise(Latte(_config("tiny-deep", num_classes=3, class_dropout_prob=0.0))).train()
    ckpt_cfg = _config("tiny-deep", num_classes=3, class_dropout_prob=0.0, gradient_checkpointing=True)
    ckpt = Latte(ckpt_cfg).train()
    ckpt.load_state_dict(plain.state_dict())
    x, t = _inputs()
    y = torch.tensor([0, 1])
    grads, calls = [], []
    for model in (plain, ckpt):
        count = [0]
        attn = model.temporal_blocks[1].attn
        attn.register_forward_hook(lambda *_, count=count: count.__setitem__(0, count[0] + 1))
        model.zero_grad()
        model(x, t, y).square().mean().backward()
        grads.append([p.grad.clone() for p in model.parameters()])
        calls.append(count[0])
    assert calls == [1, 2]  # the checkpointed block really is recomputed in the backward pass
    for g_plain, g_ckpt in zip(*grads):
        torch.testing.assert_close(g_ckpt, g_plain, rtol=1e-5, atol=1e-6)


def test_sdpa_attention_matches_explicit_softmax():
    torch.manual_seed(0)
    attn = SelfAttention(16, 2)
    x = torch.randn(3, 5, 16)
    q, k, v = attn.qkv(x).view(3, 5, 3, 2, 8).permute(2, 0, 3, 1, 4)
    weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(8), dim=-1)
    expected = attn.proj((weights @ v).transpose(1, 2).reshape(3, 5, 16))
    torch.testing.assert_close(attn(x), expected, rtol=1e-5, atol=1e-6)


def _sincos_by_hand(dim: int, position: float) -> np.ndarray:
    """The DiT / Latte 1D sin-cos formula written out: [sin(pos * w_i)..., cos(pos * w_i)...],
    w_i = 1 / 10000^(i / (dim/2)), i < dim/2."""
    omega = np.array([1.0 / 10000 ** (i / (dim / 2)) for i in range(dim // 2)])
    return np.concatenate([np.sin(position * omega), np.cos(position * omega)])


def test_sincos_1d_follows_the_formula():
    emb = sincos_1d(8, torch.tensor([0, 3]))
    assert emb[0].tolist() == [0.0] * 4 + [1.0] * 4
    np.testing.assert_allclose(emb[1].numpy(), _sincos_by_hand(8, 3), rtol=0, atol=1e-12)


def test_2d_position_embedding_puts_the_column_first_like_dit_and_latte():
    # DiT's and Latte's get_2d_sincos_pos_embed build their grid as meshgrid(w, h): the first half
    # of a patch's embedding encodes its column, the second half its row. Same order here, or
    # pretrained weights would see transposed positions.
    dim, grid_h, grid_w = 8, 3, 5
    grid = sincos_2d(dim, grid_h, grid_w).numpy()  # patch index r * grid_w + c
    assert grid.shape == (grid_h * grid_w, dim)
    for r in range(grid_h):
        for c in range(grid_w):
            expected = np.concatenate([_sincos_by_hand(dim // 2, c), _sincos_by_hand(dim // 2, r)])
            np.testing.assert_allclose(grid[r * grid_w + c], expected, rtol=0, atol=1e-12)
    # a row-first embedding would differ wherever r != c
    r, c = 0, 3
    row_first = np.concatenate([_sincos_by_hand(dim // 2, r), _sincos_by_hand(dim // 2, c)])
    assert np.abs(grid[r * grid_w + c] - row_first).max() > 0.5


def test_model_embeddings_are_the_dit_formula_on_its_patch_grid():
    model = Latte(_config())  # latent (H, W) = (8, 6), patch 2: a 4 x 3 grid of patches
    d = model.config.hidden_size
    gh, gw = model.config.grid_size
    assert (gh, gw) == (H // 2, W // 2)
    pos = model.pos_embed.numpy()
    for r in range(gh):
        for c in range(gw):
            expected = np.concatenate([_sincos_by_hand(d // 2, c), _sincos_by_hand(d // 2, r)])
            np.testing.assert_allclose(pos[r * gw + c], expected, rtol=0, atol=1e-6)  # float32 buffer
    # Latte's temporal embedding is the 1D formula over the frame index
    temp = model.temp_embed.numpy()
    for f in range(F):
        np.testing.assert_allclose(temp[f], _sincos_by_hand(d, f), rtol=0, atol=1e-6)


def test_config_is_strict_and_round_trips():
    cfg = _config(num_classes=7)
    assert LatteConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="hidden_size"):
        LatteConfig.from_dict({**cfg.to_dict(), "hiden_size": 64})
    with pytest.raises(ValueError, match="'XL'"):
        LatteConfig.from_preset("XLL", in_channels=4, num_frames=8, input_size=32)
    with pytest.raises(ValueError, match="divisible by patch_size"):
        LatteConfig.from_preset("tiny", in_channels=C, num_frames=F, input_size=(7, 6))
    with pytest.raises(ValueError, match="use 2 or 4"):
        _config(depth=3)
    with pytest.raises(ValueError, match="divisible by num_heads"):
        _config(hidden_size=36, num_heads=8)


def test_bad_inputs_are_explained():
    conditional = Latte(_config(num_classes=3))
    unconditional = Latte(_config())
    x, t = _inputs()
    with pytest.raises(ValueError, match="from its config"):
        unconditional(x[:, :, :2], t)
    with pytest.raises(ValueError, match="pass y=None"):
        unconditional(x, t, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="null class 3"):
        conditional(x, t)
    with pytest.raises(ValueError, match=r"\[0, 3\]"):
        conditional(x, t, torch.tensor([0, 4]))
    with pytest.raises(ValueError, match="class-conditional"):
        unconditional.forward_with_cfg(x, t, torch.tensor([0, 1]), 2.0)
