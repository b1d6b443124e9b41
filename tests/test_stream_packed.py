"""Packed convolution weights in chunked inference (lcvae.models.onednn.WeightPacker) against the plain twin.

A streaming pass packs the weights of its small-output 3D convolutions once per video and runs them on
oneDNN's packed kernel; the plain twin (``WeightPacker(enabled=False)``) reorders the plain weight on
every call. Both must give the same video (to float rounding: the kernels differ), and the packed pass
must hand every parameter back bit for bit, however it ends.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lcvae.models import layers, onednn, wfvae
from lcvae.models.autoencoder import WFVAE, _stream_chunks
from lcvae.models.onednn import WeightPacker
from lcvae.models.stream import StreamCache
from lcvae.models.wfvae import WFVAEConfig

pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="packing needs oneDNN"),
]

TINY = WFVAEConfig(base_channels=32, encoder_energy_flow=16, decoder_energy_flow=16, latent_channels=4)


@pytest.fixture(scope="module")
def model() -> WFVAE:
    torch.manual_seed(0)
    m = WFVAE(TINY).eval()
    with torch.no_grad():  # biases and norm affines away from 0 / 1, so a path that drops them shows
        for name, p in m.named_parameters():
            if name.endswith("bias") or "norm" in name:
                p.add_(0.05 * torch.randn_like(p))
    return m


def snapshot(m: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


def assert_restored(m: torch.nn.Module, before: dict[str, torch.Tensor]) -> None:
    after = m.state_dict()
    assert not onednn._PACKED
    for k, v in before.items():
        assert after[k].shape == v.shape and torch.equal(after[k], v), k


def plain_chunks(x: torch.Tensor, chunk: int):
    """``_stream_chunks`` with packing off: the plain twin."""
    cache = StreamCache(weights=WeightPacker(enabled=False))
    starts = [0, *range(1, x.shape[2], chunk)]
    for i, s in enumerate(starts):
        cache.final = i == len(starts) - 1
        yield x[:, :, s : (1 if i == 0 else s + chunk)], cache


def run_chunked(m: WFVAE, x: torch.Tensor, packed: bool) -> tuple[torch.Tensor, torch.Tensor]:
    chunks = _stream_chunks if packed else plain_chunks
    moments = torch.cat([m.encoder(p, c).moments for p, c in chunks(x, 4)], dim=2)
    z = moments[:, : m.latent_channels]
    video = torch.cat([m.decoder(p, c).sample for p, c in chunks(z, 1)], dim=2)  # 5 chunks: packed
    return moments, video


def test_packed_pass_matches_plain_twin_and_whole_video(model: WFVAE) -> None:
    torch.manual_seed(1)
    x = torch.rand(1, 3, 17, 64, 64) * 2 - 1
    before = snapshot(model)
    packed_layers = []
    real_pack = WeightPacker.pack

    def spy(self, conv, inp):
        out = real_pack(self, conv, inp)
        if out is not None:
            packed_layers.append(conv)
        return out

    with torch.no_grad():
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(WeightPacker, "pack", spy)
            m_packed, v_packed = run_chunked(model, x, packed=True)
        assert_restored(model, before)
        m_plain, v_plain = run_chunked(model, x, packed=False)
        whole = model.decode(model.encode(x).mode())
        m_whole = model.encoder(x).moments
    # the fast path ran: the 8x8-pixel layers of both halves were packed
    assert {id(c) for c in packed_layers} & {id(c) for c in model.encoder.mid.modules()}
    assert {id(c) for c in packed_layers} & {id(c) for c in model.decoder.mid.modules()}
    torch.testing.assert_close(m_packed, m_plain, rtol=0, atol=1e-5)
    torch.testing.assert_close(v_packed, v_plain, rtol=0, atol=1e-5)
    torch.testing.assert_close(m_packed, m_whole, rtol=0, atol=1e-4)
    torch.testing.assert_close(v_packed, whole, rtol=0, atol=1e-4)


def test_public_chunked_api_restores_weights(model: WFVAE) -> None:
    x = torch.rand(1, 3, 13, 64, 64) * 2 - 1
    before = snapshot(model)
    with torch.no_grad():
        z = model.encode(x, chunk=4).mode()
        model.decode(z, chunk=1)
    assert_restored(model, before)


def test_abandoned_and_failed_passes_restore_weights(model: WFVAE) -> None:
    x = torch.rand(1, 3, 17, 64, 64) * 2 - 1
    before = snapshot(model)
    with torch.no_grad():
        stream = model.iter_encode(x, 4)
        next(stream)
        next(stream)  # the second chunk packs the small layers
        assert onednn._PACKED
        # while a pass holds weights packed, other calls on the model still give the plain result
        whole = model.encoder(x).moments
        stream.close()
        assert_restored(model, before)
        torch.testing.assert_close(whole, model.encoder(x).moments, rtol=0, atol=1e-5)

        def failing():
            for i, (piece, cache) in enumerate(_stream_chunks(x, 4)):
                model.encoder(piece, cache)
                if i == 2:
                    raise RuntimeError("reader failed")

        with pytest.raises(RuntimeError, match="reader failed"):
            failing()
    assert_restored(model, before)


def test_nothing_packed_with_grad_or_two_chunks(model: WFVAE) -> None:
    x = torch.rand(1, 3, 5, 64, 64) * 2 - 1
    cache = StreamCache()
    for piece, c in [(x[:, :, :1], cache), (x[:, :, 1:], cache)]:
        model.encoder(piece, c)  # grad enabled: the plain path
    assert not onednn._PACKED and not cache.weights._mine
    with torch.no_grad():
        passes = list(_stream_chunks(x, 4))  # first frame + one chunk: packing would not pay
    assert not passes[-1][1].weights.enabled


def test_streaming_silu_window_matches_plain_twin(model: WFVAE) -> None:
    """SiLU written straight into the causal window equals SiLU, then the window copy (bit for bit)."""
    x = torch.rand(1, 3, 13, 64, 64) * 2 - 1
    fast = layers.silu_conv

    def plain(layer, h, cache=None):
        return layer(F.silu(h), cache) if cache is not None else fast(layer, h, cache)

    with torch.no_grad():
        outs = []
        for f in (fast, plain):
            with pytest.MonkeyPatch.context() as mp:
                mp.setattr(layers, "silu_conv", f)
                mp.setattr(wfvae, "silu_conv", f)
                z = torch.cat([model.encoder(p, c).moments for p, c in plain_chunks(x, 4)], dim=2)
                video = torch.cat([model.decoder(p, c).sample for p, c in plain_chunks(z[:, :4], 2)], dim=2)
            outs.append((z, video))
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1])
