"""WF-VAE backbone: official layout and sizes, frame rules, causality, chunked == whole."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from lcvae.models.autoencoder import WFVAE
from lcvae.models.layers import CausalConv3d, Upsample3D, conv, silu_conv, upsample_time_linear
from lcvae.models.vae import FrameRule
from lcvae.models.wfvae import WFVAEConfig

TSV = Path(__file__).parent / "data" / "wfvae-l16-state-dict.tsv"
TINY = WFVAEConfig(base_channels=32, encoder_energy_flow=16, decoder_energy_flow=16, latent_channels=4)


def meta_model(cfg: WFVAEConfig) -> WFVAE:
    with torch.device("meta"):
        return WFVAE(cfg)


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def official_tensors() -> list[tuple[str, tuple[int, ...]]]:
    rows = []
    for line in TSV.read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, shape = line.split("\t")
        rows.append((name, tuple(ast.literal_eval(shape))))
    return rows


def test_state_dict_matches_official_checkpoint_names_shapes_and_order():
    model = meta_model(
        WFVAEConfig(base_channels=192, encoder_energy_flow=128, decoder_energy_flow=128, latent_channels=16)
    )
    learned = [(n, s) for n, s in official_tensors() if "wavelet" not in n]
    assert [(k, tuple(v.shape)) for k, v in model.state_dict().items()] == learned
    haar = [n for n, _ in official_tensors() if "wavelet" in n]
    assert len(haar) == 40  # stored constants we compute instead: 8*3 3D filters + 2*4 2D + 8 inverse 3D


def test_official_preset_parameter_counts():
    model = meta_model(
        WFVAEConfig(base_channels=192, encoder_energy_flow=128, decoder_energy_flow=128, latent_channels=16)
    )
    assert n_params(model) == 317_081_244
    assert round(n_params(model.encoder) / 1e6, 2) == 84.59
    assert round(n_params(model.decoder) / 1e6, 2) == 232.49


@pytest.mark.parametrize("channels, millions", [(8, 314.97), (16, 315.46), (32, 316.46)])
def test_lcvae_backbone_parameter_counts(channels, millions):
    cfg = WFVAEConfig(
        base_channels=192, encoder_energy_flow=64, decoder_energy_flow=128, latent_channels=channels, causal=False
    )
    assert round(n_params(meta_model(cfg)) / 1e6, 2) == millions


def test_encoder_energy_flow_64_changes_only_the_documented_shapes():
    wide = meta_model(WFVAEConfig(base_channels=192, encoder_energy_flow=128, latent_channels=16)).state_dict()
    narrow = meta_model(WFVAEConfig(base_channels=192, encoder_energy_flow=64, latent_channels=16)).state_dict()
    changed = {k for k in wide if wide[k].shape != narrow[k].shape}
    assert changed == {
        "encoder.connect_l1.weight",
        "encoder.connect_l1.bias",
        "encoder.connect_l2.weight",
        "encoder.connect_l2.bias",
        "encoder.down2.0.weight",
        "encoder.mid.0.norm1.norm.weight",
        "encoder.mid.0.norm1.norm.bias",
        "encoder.mid.0.conv1.conv.weight",
        "encoder.mid.0.nin_shortcut.conv.weight",
    }


@pytest.mark.parametrize("frames, latent", [(1, 1), (17, 5), (33, 9)])
def test_causal_latent_shapes(frames, latent):
    model = WFVAE(TINY).eval()
    with torch.no_grad():
        post = model.encode(torch.randn(1, 3, frames, 16, 24))
        assert post.mean.shape == (1, 4, latent, 2, 3)
        assert model.decode(post.mode()).shape == (1, 3, frames, 16, 24)


def test_noncausal_shapes():
    model = WFVAE(WFVAEConfig(**{**TINY.to_dict(), "causal": False})).eval()
    with torch.no_grad():
        post = model.encode(torch.randn(1, 3, 8, 16, 16))
        assert post.mean.shape == (1, 4, 2, 2, 2)
        assert model.decode(post.mode()).shape == (1, 3, 8, 16, 16)


@pytest.mark.parametrize(
    "frames, causal, nearest",
    [(10, True, "use 9 or 13"), (2, True, "use 1 or 5"), (30, False, "use 28 or 32"), (3, False, "use 4")],
)
def test_frame_rule_errors_name_rule_and_nearest_counts(frames, causal, nearest):
    with pytest.raises(ValueError, match=nearest):
        FrameRule(causal).check_frames(frames)
    model = WFVAE(WFVAEConfig(**{**TINY.to_dict(), "causal": causal}))
    with pytest.raises(ValueError, match="frames"):
        model.encode(torch.zeros(1, 3, frames, 16, 16))


def test_size_rule_error():
    with pytest.raises(ValueError, match="multiples of 8, got 22x16; resize or crop to 24x16"):
        WFVAE(TINY).encode(torch.zeros(1, 3, 5, 22, 16))


def test_encoder_is_causal():
    torch.manual_seed(0)
    model = WFVAE(TINY).eval()
    x = torch.randn(1, 3, 33, 16, 16)
    y = x.clone()
    y[:, :, 20:] += 1.0  # frame 20 belongs to latent frame 5 (frames 17..20)
    with torch.no_grad():
        a, b = model.encode(x).mean, model.encode(y).mean
    assert torch.equal(a[:, :, :5], b[:, :, :5])
    assert (a[:, :, 5] - b[:, :, 5]).abs().max() > 1e-3


def test_decoder_is_causal_up_to_one_latent_frame_lookahead():
    torch.manual_seed(0)
    model = WFVAE(TINY).eval()
    z = torch.randn(1, 4, 9, 2, 2)
    w = z.clone()
    w[:, :, 6] += 1.0
    with torch.no_grad():
        a, b = model.decode(z), model.decode(w)
    # latent frame j covers video frames 4j-3..4j; linear time upsampling lets it reach one latent frame back
    first_changed = int((a - b).flatten(3).abs().amax(dim=(0, 1, 3)).gt(0).nonzero()[0])
    assert first_changed >= 4 * 5 - 3
    assert torch.equal(a[:, :, : 4 * 4], b[:, :, : 4 * 4])


@pytest.mark.parametrize("chunk", [4, 8, 12, 32])
def test_chunked_encoding_equals_whole_video(chunk):
    torch.manual_seed(1)
    model = WFVAE(TINY).eval()
    x = torch.randn(1, 3, 33, 16, 16)
    with torch.no_grad():
        whole = model.encode_moments(x)
        part = model.encode_moments(x, chunk=chunk)
    for name in ("moments", "w2", "w3"):
        assert (getattr(whole, name) - getattr(part, name)).abs().max() <= 1e-4


@pytest.mark.parametrize("t_interpolation", ["trilinear", "nearest"])
@pytest.mark.parametrize("chunk", [1, 2, 3, 8])
def test_chunked_decoding_equals_whole_video(chunk, t_interpolation):
    torch.manual_seed(2)
    model = WFVAE(WFVAEConfig(**{**TINY.to_dict(), "t_interpolation": t_interpolation})).eval()
    z = torch.randn(1, 4, 9, 4, 4)
    with torch.no_grad():
        whole = model.decode(z)
        part = model.decode(z, chunk=chunk)
    assert part.shape == whole.shape == (1, 3, 33, 32, 32)
    assert (whole - part).abs().max() <= 1e-4


def test_streaming_decoder_yields_frames_in_order():
    torch.manual_seed(3)
    model = WFVAE(TINY).eval()
    z = torch.randn(1, 4, 5, 2, 2)
    with torch.no_grad():
        pieces = list(model.iter_decode(z, chunk=1))
        whole = model.decode(z)
    assert sum(p.shape[2] for p in pieces) == 17 and len(pieces) == 5
    assert (torch.cat(pieces, dim=2) - whole).abs().max() <= 1e-4


def test_chunking_refuses_noncausal_and_groupnorm_models():
    with pytest.raises(ValueError, match="causal"):
        WFVAE(WFVAEConfig(**{**TINY.to_dict(), "causal": False})).encode(torch.zeros(1, 3, 8, 16, 16), chunk=4)
    with pytest.raises(ValueError, match="layernorm"):
        WFVAE(WFVAEConfig(**{**TINY.to_dict(), "norm": "groupnorm"})).encode(torch.zeros(1, 3, 9, 16, 16), chunk=4)
    with pytest.raises(ValueError, match="multiple of 4"):
        WFVAE(TINY).encode(torch.zeros(1, 3, 9, 16, 16), chunk=6)


def test_time_upsampling_matches_trilinear_interpolation():
    x = torch.randn(2, 3, 5, 4, 4)
    ours = upsample_time_linear(x, x[:, :, :1], x[:, :, -1:])
    ref = F.interpolate(x, scale_factor=(2, 1, 1), mode="trilinear", align_corners=False)
    assert torch.allclose(ours, ref, atol=1e-6)


def test_nearest_time_upsampling_is_upstreams():
    """Upstream's causal Spatial2xTime2x3DUpsample with t_interpolation="nearest": the first frame is
    upsampled in space only, the rest x2 in time by F.interpolate(nearest), then x2 in space."""
    torch.manual_seed(5)
    layer = Upsample3D(3, 3, causal=True, time_mode="nearest").eval()
    x = torch.randn(1, 3, 4, 4, 4)
    head = F.interpolate(x[:, :, :1], scale_factor=(1, 2, 2), mode="trilinear")
    rest = F.interpolate(x[:, :, 1:], scale_factor=(2, 1, 1), mode="nearest")
    rest = F.interpolate(rest, scale_factor=(1, 2, 2), mode="trilinear")
    with torch.no_grad():
        want = layer.conv(torch.cat([head, rest], dim=2))
        assert (layer(x) - want).abs().max() <= 1e-6


def test_single_image_is_a_one_frame_video():
    torch.manual_seed(4)
    model = WFVAE(TINY).eval()
    x = torch.randn(1, 3, 9, 16, 16)
    with torch.no_grad():
        video_first = model.encode(x).mean[:, :, :1]
        image = model.encode(x[:, :, :1]).mean
    assert torch.allclose(video_first, image, atol=1e-5)


@pytest.mark.parametrize("frames, stride", [(3, 1), (6, 1), (12, 1), (5, 2)])
def test_onednn_convolution_equals_plain_conv3d_values_and_gradients(frames, stride):
    from lcvae.models.layers import conv3d

    torch.manual_seed(frames)
    conv = torch.nn.Conv3d(8, 16, 3, stride=stride, padding=(0, 1, 1))
    x = torch.randn(2, 8, frames, 20, 16, requires_grad=True)  # large enough to take the oneDNN path
    from lcvae.models.layers import _mkldnn_ok

    assert _mkldnn_ok(x, conv.weight)
    fast, plain = conv3d(conv, x), conv(x)
    assert torch.allclose(fast, plain, atol=1e-5)
    g_fast = torch.autograd.grad(fast.square().sum(), [x, conv.weight, conv.bias])
    g_plain = torch.autograd.grad(plain.square().sum(), [x, conv.weight, conv.bias])
    for a, b in zip(g_fast, g_plain):
        assert torch.allclose(a, b, atol=1e-3, rtol=1e-4)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast goes through the regular op
        assert conv3d(conv, x).dtype == torch.bfloat16


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_silu_into_padded_buffer_equals_plain_silu_then_conv(causal, dtype):
    """The whole-video fast path of silu_conv against its plain twin (F.silu, temporal_pad's cat, conv),
    on a channels-last view like the one LayerNorm hands over."""
    torch.manual_seed(3)
    layer = CausalConv3d(8, 16, 3, spatial_padding=1, causal=causal).to(dtype)
    h = torch.randn(1, 5, 16, 16, 8).to(dtype).movedim(-1, 1)  # (1, 8, 5, 16, 16), channels-last strides
    with torch.no_grad():
        fast = silu_conv(layer, h)
        plain = layer(F.silu(h))
    assert fast.shape == plain.shape == (1, 16, 5, 16, 16)
    # the same numbers up to float rounding (oneDNN's fp32 result differs in the last bit between buffers)
    tol = 1e-6 if dtype == torch.float32 else 1e-2
    assert (fast.float() - plain.float()).abs().max() <= tol * plain.float().abs().max()


def test_silu_conv_takes_the_plain_path_under_autograd():
    torch.manual_seed(4)
    layer = CausalConv3d(4, 4, 3, spatial_padding=1)
    h = torch.randn(1, 4, 3, 16, 16, requires_grad=True)
    silu_conv(layer, h).sum().backward()
    want = torch.autograd.grad(layer(F.silu(h)).sum(), h)[0]
    assert torch.allclose(h.grad, want, atol=1e-6)


@pytest.mark.parametrize("frames, cin", [(6, 8), (1, 64)])  # input larger than the weight: channels-last; smaller: not
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_layout_choosing_conv_equals_the_layer_itself(frames, cin, dtype):
    """conv() picks channels-last or channels-first by size; its plain twin is the layer's own forward."""
    torch.manual_seed(5)
    for layer, x in (
        (torch.nn.Conv3d(cin, 16, 3, padding=(0, 1, 1)).to(dtype), torch.randn(1, cin, frames + 2, 16, 16).to(dtype)),
        (torch.nn.Conv2d(cin, 16, 3, padding=1).to(dtype), torch.randn(frames, cin, 16, 16).to(dtype)),
    ):
        with torch.no_grad():
            got, want = conv(layer, x), layer(x)
        tol = 1e-5 if dtype == torch.float32 else 2e-2
        assert got.shape == want.shape
        assert (got.float() - want.float()).abs().max() <= tol * want.float().abs().max()
