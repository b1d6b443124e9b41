"""Haar transforms: vectorised versions against plain filter banks and loops, exactness, layouts."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lcvae.wavelets import haar2d, haar3d, haar_t, ihaar2d, ihaar3d, ihaar_t

R2 = math.sqrt(2.0)


def _sign(hi: int, k: int) -> float:
    """Tap k of the Haar filter: low [1, 1], high [1, -1] (unnormalised)."""
    return -1.0 if (hi and k == 1) else 1.0


def _filters3d(dtype: torch.dtype) -> torch.Tensor:
    """The 8 2x2x2 sign patterns, s = 4*t_hi + 2*h_hi + w_hi, as a (8, 1, 2, 2, 2) conv weight."""
    w = torch.empty(8, 1, 2, 2, 2, dtype=dtype)
    for s in range(8):
        th, hh, wh = (s >> 2) & 1, (s >> 1) & 1, s & 1
        for kt in range(2):
            for kh in range(2):
                for kw in range(2):
                    w[s, 0, kt, kh, kw] = _sign(th, kt) * _sign(hh, kh) * _sign(wh, kw) / (2 * R2)
    return w


def _filters2d(dtype: torch.dtype) -> torch.Tensor:
    """The official WF-VAE 2D filters, written out literally (index 1 varies along H, 2 along W)."""
    taps = [
        [[1, 1], [1, 1]],
        [[1, 1], [-1, -1]],
        [[1, -1], [1, -1]],
        [[1, -1], [-1, 1]],
    ]
    return torch.tensor(taps, dtype=dtype).unsqueeze(1) / 2.0


def naive_haar3d(x: torch.Tensor) -> torch.Tensor:
    b, c, t, h, w = x.shape
    out = torch.empty(b, 8 * c, t // 2, h // 2, w // 2, dtype=x.dtype)
    weight = _filters3d(x.dtype)
    for ch in range(c):
        y = F.conv3d(x[:, ch : ch + 1], weight, stride=2)
        for s in range(8):
            out[:, s * c + ch] = y[:, s]
    return out


def naive_ihaar3d(coef: torch.Tensor) -> torch.Tensor:
    b, ch8, t2, h2, w2 = coef.shape
    c = ch8 // 8
    out = torch.empty(b, c, 2 * t2, 2 * h2, 2 * w2, dtype=coef.dtype)
    weight = _filters3d(coef.dtype)
    for ch in range(c):
        sub = torch.stack([coef[:, s * c + ch] for s in range(8)], dim=1)
        out[:, ch] = F.conv_transpose3d(sub, weight, stride=2)[:, 0]
    return out


def loop_causal_haar3d(x: torch.Tensor) -> torch.Tensor:
    """Causal 3D Haar by explicit loops over output frames and the 8 corners of each 2x2x2 cell."""
    b, c, t, h, w = x.shape
    t2 = (t + 1) // 2
    pairs = [(0, 0)] + [(2 * k - 1, 2 * k) for k in range(1, t2)]
    out = torch.zeros(b, 8 * c, t2, h // 2, w // 2, dtype=x.dtype)
    for k, frames in enumerate(pairs):
        for s in range(8):
            th, hh, wh = (s >> 2) & 1, (s >> 1) & 1, s & 1
            acc = torch.zeros(b, c, h // 2, w // 2, dtype=x.dtype)
            for kt in range(2):
                for kh in range(2):
                    for kw in range(2):
                        sign = _sign(th, kt) * _sign(hh, kh) * _sign(wh, kw)
                        acc += sign * x[:, :, frames[kt], kh::2, kw::2]
            out[:, s * c : (s + 1) * c, k] = acc / (2 * R2)
    return out


def naive_haar2d(x: torch.Tensor) -> torch.Tensor:
    b, c, t, h, w = x.shape
    out = torch.empty(b, 4 * c, t, h // 2, w // 2, dtype=x.dtype)
    weight = _filters2d(x.dtype)
    for ch in range(c):
        for f in range(t):
            y = F.conv2d(x[:, ch : ch + 1, f], weight, stride=2)
            for s in range(4):
                out[:, s * c + ch, f] = y[:, s]
    return out


def naive_ihaar2d(coef: torch.Tensor) -> torch.Tensor:
    b, ch4, t, h2, w2 = coef.shape
    c = ch4 // 4
    out = torch.empty(b, c, t, 2 * h2, 2 * w2, dtype=coef.dtype)
    weight = _filters2d(coef.dtype)
    for ch in range(c):
        for f in range(t):
            sub = torch.stack([coef[:, s * c + ch, f] for s in range(4)], dim=1)
            out[:, ch, f] = F.conv_transpose2d(sub, weight, stride=2)[:, 0]
    return out


def loop_haar_t(x: torch.Tensor) -> torch.Tensor:
    t = x.shape[2]
    lows = [(x[:, :, 2 * k] + x[:, :, 2 * k + 1]) / R2 for k in range(t // 2)]
    highs = [(x[:, :, 2 * k] - x[:, :, 2 * k + 1]) / R2 for k in range(t // 2)]
    return torch.cat([torch.stack(lows, 2), torch.stack(highs, 2)], dim=1)


def loop_ihaar_t(coef: torch.Tensor) -> torch.Tensor:
    c = coef.shape[1] // 2
    frames = []
    for k in range(coef.shape[2]):
        lo, hi = coef[:, :c, k], coef[:, c:, k]
        frames += [(lo + hi) / R2, (lo - hi) / R2]
    return torch.stack(frames, 2)


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)


# ---------------------------------------------------------------- plain twins


def test_haar3d_equals_conv_filter_bank(gen):
    x = torch.randn(2, 3, 4, 6, 8, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(haar3d(x), naive_haar3d(x), rtol=0, atol=1e-13)
    coef = torch.randn(2, 24, 2, 3, 4, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(ihaar3d(coef), naive_ihaar3d(coef), rtol=0, atol=1e-13)


def test_causal_haar3d_equals_loop_over_frame_pairs(gen):
    x = torch.randn(2, 2, 7, 4, 6, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(haar3d(x, causal=True), loop_causal_haar3d(x), rtol=0, atol=1e-13)


def test_causal_ihaar3d_is_plain_inverse_without_first_frame(gen):
    coef = torch.randn(1, 16, 3, 2, 2, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(ihaar3d(coef, causal=True), naive_ihaar3d(coef)[:, :, 1:], rtol=0, atol=1e-13)


def test_haar2d_equals_wfvae_filter_bank(gen):
    x = torch.randn(2, 3, 3, 6, 4, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(haar2d(x), naive_haar2d(x), rtol=0, atol=1e-13)
    coef = torch.randn(2, 12, 3, 3, 2, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(ihaar2d(coef), naive_ihaar2d(coef), rtol=0, atol=1e-13)


def test_haar_t_equals_loop(gen):
    x = torch.randn(2, 3, 6, 4, 2, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(haar_t(x), loop_haar_t(x), rtol=0, atol=1e-13)
    coef = torch.randn(2, 6, 3, 4, 2, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(ihaar_t(coef), loop_ihaar_t(coef), rtol=0, atol=1e-13)


# ---------------------------------------------------------------- exactness

CASES = [
    ("haar3d", lambda x: haar3d(x), lambda c: ihaar3d(c), (2, 3, 4, 6, 8)),
    ("haar3d-causal", lambda x: haar3d(x, True), lambda c: ihaar3d(c, True), (2, 3, 5, 6, 8)),
    ("haar2d", haar2d, ihaar2d, (2, 3, 3, 6, 8)),
    ("haar_t", haar_t, ihaar_t, (2, 3, 4, 6, 5)),
]


@pytest.mark.parametrize("name,fwd,inv,shape", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-6), (torch.float64, 1e-12)])
def test_round_trip_is_exact(gen, name, fwd, inv, shape, dtype, tol):
    x = torch.randn(*shape, generator=gen, dtype=dtype)
    assert (inv(fwd(x)) - x).abs().max().item() < tol


@pytest.mark.parametrize("name,fwd,inv,shape", CASES, ids=[c[0] for c in CASES])
def test_energy_is_preserved(gen, name, fwd, inv, shape):
    x = torch.randn(*shape, generator=gen, dtype=torch.float64)
    y = fwd(x)
    if name == "haar3d-causal":
        # The duplicated first frame is counted twice: that is the energy the transform sees.
        x = torch.cat((x[:, :, :1], x), dim=2)
    assert y.pow(2).sum().item() == pytest.approx(x.pow(2).sum().item(), rel=1e-12)


def test_bfloat16_round_trip_within_bf16_precision(gen):
    x = torch.randn(1, 2, 4, 4, 4, generator=gen).to(torch.bfloat16)
    y = ihaar3d(haar3d(x))
    assert y.dtype == torch.bfloat16
    assert (y.float() - x.float()).abs().max().item() < 0.05


def test_gradients_flow_through_causal_haar3d(gen):
    x = torch.randn(1, 1, 3, 2, 2, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: haar3d(v, causal=True), (x,))
    c = torch.randn(1, 4, 2, 2, 2, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: ihaar2d(v), (c,))


def test_non_contiguous_input_matches_contiguous(gen):
    x = torch.randn(2, 4, 6, 8, 3, generator=gen).permute(0, 4, 1, 2, 3)  # (2, 3, 4, 6, 8)
    assert not x.is_contiguous()
    torch.testing.assert_close(haar3d(x), haar3d(x.contiguous()), rtol=0, atol=0)


# ---------------------------------------------------------------- causal first-frame rule


def test_causal_single_frame_is_a_one_frame_video(gen):
    x = torch.randn(2, 3, 1, 4, 4, generator=gen, dtype=torch.float64)
    y = haar3d(x, causal=True)
    assert y.shape == (2, 24, 1, 2, 2)
    assert torch.equal(y[:, 12:], torch.zeros_like(y[:, 12:]))  # t-high of (x0, x0) is exactly 0
    # The t-low band of the pair (x0, x0) is sqrt(2) times the 2D Haar of x0.
    twod = haar2d(x)  # (LL, H, W, HH) order -> haar3d order s = 2*h + w is (LL, W, H, HH)
    expected = torch.cat([twod[:, 0:3], twod[:, 6:9], twod[:, 3:6], twod[:, 9:12]], dim=1) * R2
    torch.testing.assert_close(y[:, :12], expected, rtol=0, atol=1e-13)
    assert ihaar3d(y, causal=True).shape == (2, 3, 1, 4, 4)


def test_causal_nine_frames_give_five_and_inverse_drops_duplicate(gen):
    x = torch.randn(1, 2, 9, 4, 4, generator=gen, dtype=torch.float64)
    y = haar3d(x, causal=True)
    assert y.shape == (1, 16, 5, 2, 2)
    assert torch.equal(y[:, 8:, 0], torch.zeros_like(y[:, 8:, 0]))
    assert y[:, 8:, 1:].abs().min().item() > 0  # later frames pair distinct frames
    full = ihaar3d(y)  # non-causal inverse keeps the reconstructed duplicate
    assert full.shape[2] == 10
    torch.testing.assert_close(full[:, :, 0], x[:, :, 0], rtol=0, atol=1e-13)
    out = ihaar3d(y, causal=True)
    assert out.shape == x.shape
    torch.testing.assert_close(out, x, rtol=0, atol=1e-13)


# ---------------------------------------------------------------- layouts


def test_video_constant_in_time_has_no_temporal_high_band(gen):
    frame = torch.randn(2, 3, 1, 4, 6, generator=gen, dtype=torch.float64)
    x = frame.expand(2, 3, 8, 4, 6)
    y = haar3d(x)
    assert y[:, 12:].abs().max().item() < 1e-14
    assert y[:, :12].abs().max().item() > 0.1
    assert haar_t(x)[:, 3:].abs().max().item() < 1e-14
    yc = haar3d(x[:, :, :7], causal=True)
    assert yc[:, 12:].abs().max().item() < 1e-14


def _alternating(axis: int, shape=(1, 2, 4, 4, 4)) -> torch.Tensor:
    """+1/-1 alternating along one axis (2=T, 3=H, 4=W), constant along the others: pure high band."""
    n = shape[axis]
    pattern = torch.tensor([(-1.0) ** k for k in range(n)], dtype=torch.float64)
    view = [1] * 5
    view[axis] = n
    return pattern.view(view).expand(shape).contiguous()


@pytest.mark.parametrize("axis,s3d,s2d", [(4, 1, 2), (3, 2, 1), (2, 4, None)], ids=["W", "H", "T"])
def test_subband_order_with_single_axis_inputs(axis, s3d, s2d):
    x = _alternating(axis)
    c = x.shape[1]
    y = haar3d(x)
    for s in range(8):
        band = y[:, s * c : (s + 1) * c]
        if s == s3d:
            # Each 2x2x2 cell is (+1, -1) along the axis: high tap sum 2, two low taps 2 each.
            torch.testing.assert_close(band, torch.full_like(band, 8 / (2 * R2)), rtol=0, atol=1e-13)
        else:
            assert band.abs().max().item() < 1e-14
    y2 = haar2d(x)
    for s in range(4):
        band = y2[:, s * c : (s + 1) * c].abs()
        if s2d is None:
            # alternating in time: every frame is constant, so only LL, with value +-2
            expected = 2.0 if s == 0 else 0.0
        else:
            expected = 2.0 if s == s2d else 0.0
        torch.testing.assert_close(band, torch.full_like(band, expected), rtol=0, atol=1e-13)


def test_haar_t_puts_low_band_first():
    x = _alternating(2)
    y = haar_t(x)
    assert y[:, :2].abs().max().item() < 1e-14
    torch.testing.assert_close(y[:, 2:], torch.full_like(y[:, 2:], R2), rtol=0, atol=1e-13)


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda: haar3d(torch.zeros(1, 1, 10, 2, 2), causal=True), "odd frame count (1 + 2k), got 10; use 9 or 11"),
        (lambda: haar3d(torch.zeros(1, 1, 0, 2, 2), causal=True), "got 0; use 1"),
        (lambda: haar3d(torch.zeros(1, 1, 9, 2, 2)), "even frame count (2k), got 9; use 8 or 10"),
        (lambda: haar3d(torch.zeros(1, 1, 2, 5, 2)), "even height (2k), got 5; use 4 or 6"),
        (lambda: haar3d(torch.zeros(1, 1, 2, 2, 3)), "even width (2k), got 3; use 2 or 4"),
        (lambda: haar3d(torch.zeros(1, 2, 2, 2)), "5-D tensor"),
        (lambda: ihaar3d(torch.zeros(1, 12, 1, 2, 2)), "multiple of 8 (one block per subband), got 12; use 8 or 16"),
        (lambda: haar2d(torch.zeros(1, 1, 3, 1, 2)), "even height (2k), got 1; use 2"),
        (lambda: ihaar2d(torch.zeros(1, 6, 1, 2, 2)), "multiple of 4 (one block per subband), got 6; use 4 or 8"),
        (lambda: haar_t(torch.zeros(1, 1, 5, 2)), "even frame count (2k), got 5; use 4 or 6"),
        (lambda: ihaar_t(torch.zeros(1, 3, 2)), "multiple of 2 (one block per subband), got 3; use 2 or 4"),
        (lambda: haar_t(torch.zeros(4, 4)), "(B, C, T, ...)"),
    ],
)
def test_shape_errors_name_rule_and_nearest_sizes(call, message):
    with pytest.raises(ValueError) as info:
        call()
    assert message in str(info.value)
