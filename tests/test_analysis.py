"""Latent frequency analysis on synthetic latents with known answers; streaming equals one-shot; figures."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from lcvae.analysis import (
    SUBBAND_NAMES,
    LagMoments,
    LatentAnalyzer,
    analyze_latents,
    subband_index,
)
from lcvae.analysis_output import write_analysis
from lcvae.compression import Coefficients, LatentCompressor
from lcvae.masks import LEAF_NAMES, CompressionConfig, reference_mask
from lcvae.wavelets import haar3d, ihaar3d


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def one_shot(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Energy and lag-1 autocorrelation per (subband, channel) of a whole (N, C, T, H, W) latent at once,
    written directly from Eq. 11 with the pooled mean and variance."""
    n, c = z.shape[:2]
    sub = haar3d(z.double()).view(n, 8, c, *haar3d(z.double()).shape[2:])  # (N, 8, C, T2, H2, W2)
    x = sub.permute(1, 2, 0, 3, 4, 5)  # (8, C, N, T2, H2, W2)
    energy = x.pow(2).mean((2, 3, 4, 5))
    mu = x.mean((2, 3, 4, 5), keepdim=True)
    var = (x - mu).pow(2).mean((2, 3, 4, 5))
    cov = ((x[:, :, :, :-1] - mu) * (x[:, :, :, 1:] - mu)).mean((2, 3, 4, 5))
    return energy, cov / var


# ---------------------------------------------------------------- known answers


@pytest.mark.parametrize("causal", [False, True])
def test_latent_constant_in_time_has_unit_autocorrelation_and_no_temporal_high_energy(causal):
    frame = torch.randn(3, 4, 1, 8, 8, generator=gen())
    t = 9 if causal else 8
    z = frame.expand(3, 4, t, 8, 8).clone()
    if causal:
        z[:, :, 0] = 100.0  # the image frame differs; it must not enter the subbands
    r = analyze_latents([z], causal=causal)
    assert r.subband_energy[4:].abs().max() == 0  # HLL..HHH: temporal-high
    assert r.subband_energy[:4].min() > 0
    assert torch.allclose(r.subband_autocorrelation[:4], torch.ones(4, 4, dtype=torch.float64), atol=1e-9)
    assert torch.isnan(r.subband_autocorrelation[4:]).all()  # zero variance: undefined, not 0 or 1
    json.dumps(r.to_dict(), allow_nan=False)  # NaN becomes null
    if causal:
        assert torch.allclose(r.head_energy, torch.full((4,), 1e4, dtype=torch.float64))


def test_white_noise_has_equal_subband_energy_and_no_autocorrelation():
    # N(0, 1) latent: the orthonormal Haar gives N(0, 1) coefficients, so every subband's mean square
    # estimates 1 with standard error sqrt(2 / n), and the lag-1 correlation estimates 0 with standard
    # error 1 / sqrt(pairs) (products of independent unit normals). Bound: 5 standard errors.
    z = torch.randn(8, 4, 8, 32, 32, generator=gen(1))
    r = analyze_latents([z[:3], z[3:]], causal=False)
    n = 8 * 4 * 16 * 16  # coefficients per (subband, channel)
    assert r.subband_pairs == 8 * 3 * 16 * 16
    assert (r.subband_energy - 1).abs().max() < 5 * math.sqrt(2 / n)
    # Shares: each subband pools 4 channels (4n values); share = E_s / sum, |d share| <= |dE_s| / 8 + ...
    share_se = math.sqrt(2 / (4 * n)) / 8 * 2
    assert (r.subband_share - 1 / 8).abs().max() < 5 * share_se
    assert r.subband_autocorrelation.abs().max() < 5 / math.sqrt(r.subband_pairs)


@pytest.mark.parametrize("s, c", [(0, 0), (3, 2), (5, 1), (7, 3)])
def test_energy_placed_in_one_subband_shows_up_there_only(s, c):
    coeffs = torch.zeros(2, 8 * 4, 4, 4, 4, dtype=torch.float64)
    values = torch.randn(2, 4, 4, 4, generator=gen(s), dtype=torch.float64)
    coeffs[:, s * 4 + c] = values  # haar3d order: channel s*C + c
    z = ihaar3d(coeffs)
    r = analyze_latents([z], causal=False)
    expected = torch.zeros(8, 4, dtype=torch.float64)
    expected[s, c] = values.pow(2).mean()
    assert torch.allclose(r.subband_energy, expected, atol=1e-12)


@pytest.mark.parametrize("axis, name", [(4, "LLH"), (3, "LHL"), (2, "HLL")])
def test_subband_labels_follow_the_axis_that_varies(axis, name):
    # A latent alternating +1/-1 along one axis (constant along the others) is pure high band on that
    # axis: W -> LLH, H -> LHL, T -> HLL (letters t, h, w). A channel-major reading would mislabel it.
    shape = [1, 3, 8, 8, 8]
    sign = torch.tensor([1.0, -1.0]).repeat(4)
    view = [1] * 5
    view[axis] = 8
    z = sign.view(view).expand(shape).clone()
    z[:, 1] *= 2
    r = analyze_latents([z], causal=False)
    assert SUBBAND_NAMES[int(r.subband_energy.sum(1).argmax())] == name
    assert SUBBAND_NAMES.index(name) == subband_index(int(axis == 2), int(axis == 3), int(axis == 4))
    assert r.subband_share[SUBBAND_NAMES.index(name)] == pytest.approx(1.0, abs=1e-12)
    # Energies average (not sum) to the mean square: one subband holds all 8 values' energy of a cube.
    assert torch.allclose(
        r.subband_energy[SUBBAND_NAMES.index(name)], torch.tensor([8.0, 32.0, 8.0], dtype=torch.float64)
    )


# ---------------------------------------------------------------- streaming


def test_streaming_statistics_equal_the_one_shot_computation():
    g = gen(2)
    # Structure so nothing is trivially 0 or 1: channel offsets, temporal smoothing, random scales.
    noise = torch.randn(11, 3, 8, 8, 12, generator=g)
    z = noise.cumsum(2) * torch.rand(1, 3, 1, 1, 1, generator=g) + torch.randn(1, 3, 1, 1, 1, generator=g)
    sizes, start = [], 0
    while start < 11:
        k = int(torch.randint(1, 4, (1,), generator=g))
        sizes.append(min(k, 11 - start))
        start += k
    batches = list(torch.split(z, sizes))
    r = analyze_latents(batches, causal=False, leaves=False)
    energy, rho = one_shot(z)
    assert len(batches) > 3
    assert torch.allclose(r.subband_energy, energy, rtol=1e-10, atol=1e-12)
    assert torch.allclose(r.subband_autocorrelation, rho, rtol=1e-9, atol=1e-10)
    assert r.clips == 11


def test_merged_accumulators_equal_one_accumulator():
    y = torch.randn(6, 2, 3, 5, 4, 4, generator=gen(3)) + 0.5
    whole, a, b = LagMoments((2, 3)), LagMoments((2, 3)), LagMoments((2, 3))
    whole.update(y)
    a.update(y[:2])
    b.update(y[2:])
    merged = a.merge(b)
    assert torch.allclose(merged.energy(), whole.energy())
    assert torch.allclose(merged.autocorrelation(), whole.autocorrelation())
    # Plain loop twin of the autocorrelation for one cell.
    cell = y[:, 1, 2].double()  # (N, T, H, W)
    mu = cell.mean()
    num = 0.0
    for n in range(6):
        for t in range(4):
            num += float(((cell[n, t] - mu) * (cell[n, t + 1] - mu)).sum())
    expected = num / (6 * 4 * 16) / float(((cell - mu) ** 2).mean())
    assert float(whole.autocorrelation()[1, 2]) == pytest.approx(expected, rel=1e-10)


# ---------------------------------------------------------------- Multi-WT leaves


def test_leaf_energy_shares_under_masks():
    c = 8
    comp = LatentCompressor(CompressionConfig(), c, causal=False)
    amplitude = torch.tensor([3.0, 2.0, 1.5, 1.0, 1.2, 0.5, 0.4, 0.3], dtype=torch.float64)
    signs = torch.randint(0, 2, (2, 32 * c, 1, 4, 4), generator=gen(4)).double() * 2 - 1
    groups = signs * amplitude.repeat_interleave(4 * c).view(1, -1, 1, 1, 1)  # |coefficient| = a_j in leaf j
    z = comp.synthesis(Coefficients(groups=groups))
    r = analyze_latents([z], causal=False)
    per_index = amplitude.repeat_interleave(4 * c).pow(2)  # energy of every coefficient channel
    total = float(per_index.sum())
    assert r.kept_share["paper"] == pytest.approx(
        float(amplitude[[0, 1, 2, 4]].pow(2).sum()) / float(amplitude.pow(2).sum())
    )
    assert r.kept_share["keep25"] == pytest.approx(float(amplitude[:2].pow(2).sum() / amplitude.pow(2).sum()))
    assert r.kept_share["keep75"] == pytest.approx(float(amplitude[:6].pow(2).sum() / amplitude.pow(2).sum()))
    # Reference mask (C = 8): the first n_j channels of block j; every channel in block j holds a_j^2.
    counts = [32, 30, 30, 2, 30, 2, 2, 0]
    assert len(reference_mask(c)) == sum(counts)
    expected = sum(n * float(a) ** 2 for n, a in zip(counts, amplitude)) / total
    assert r.kept_share["reference"] == pytest.approx(expected)
    assert torch.allclose(r.leaf_share, amplitude.pow(2) / amplitude.pow(2).sum())
    assert r.leaf_energy.shape == (8, 4, c)


def test_leaf_autocorrelation_across_groups_and_reference_mask_only_for_its_channel_counts():
    block = torch.randn(2, 4, 8, 4, 4, generator=gen(5))
    r = analyze_latents([torch.cat([block, block], 2)], causal=False)  # two identical groups per clip
    nonzero = r.leaf_energy > 1e-20
    assert torch.allclose(r.leaf_autocorrelation[nonzero], torch.ones(int(nonzero.sum()), dtype=torch.float64))
    assert r.leaf_pairs == 2 * 1 * 2 * 2
    assert r.kept_share["reference"] is None and "reference" in r.notes["kept_share.reference"]
    single = analyze_latents([block], causal=False)
    assert torch.isnan(single.leaf_autocorrelation).all() and "2 groups" in single.notes["leaves.autocorrelation"]


# ---------------------------------------------------------------- errors


def test_bad_latents_are_refused_with_the_rule():
    with pytest.raises(ValueError, match="1 \\+ 2k"):
        analyze_latents([torch.zeros(1, 4, 8, 4, 4)], causal=True)
    with pytest.raises(ValueError, match="8G latent frames"):
        analyze_latents([torch.zeros(1, 4, 4, 4, 4)], causal=False)
    with pytest.raises(ValueError, match="same channel count"):
        analyze_latents([torch.zeros(1, 4, 8, 4, 4), torch.zeros(1, 2, 8, 4, 4)], causal=False)
    with pytest.raises(ValueError, match="even"):
        analyze_latents([torch.zeros(1, 4, 8, 5, 4)], causal=False)
    with pytest.raises(ValueError, match="yielded nothing"):
        analyze_latents([], causal=False)
    one_clip = analyze_latents([torch.randn(4, 4, 4, 4, generator=gen(6))], causal=False, leaves=False)
    assert one_clip.clips == 1  # a 4-D tensor is one clip


# ---------------------------------------------------------------- outputs


def test_analysis_json_and_figures_are_written(tmp_path):
    pytest.importorskip("matplotlib")
    analyzer = LatentAnalyzer(causal=True)
    analyzer.update(torch.randn(2, 8, 9, 8, 8, generator=gen(7)).cumsum(2))
    result = analyzer.result()
    data = write_analysis(result, tmp_path, source={"note": "test"})
    on_disk = json.loads((tmp_path / "analysis.json").read_text())
    assert on_disk == json.loads(json.dumps(data))
    assert on_disk["subbands"]["names"] == list(SUBBAND_NAMES) and on_disk["leaves"]["names"] == list(LEAF_NAMES)
    assert np.allclose(on_disk["subbands"]["energy"], result.subband_energy.numpy())
    assert sum(on_disk["subbands"]["energy_share"]) == pytest.approx(1.0)
    expected = {
        "energy_subbands.png",
        "energy_heatmap.png",
        "autocorrelation_heatmap.png",
        "energy_leaves.png",
        "leaf_energy_heatmap.png",
        "subband_images.png",
    }
    assert set(on_disk["figures"]) == expected
    for name in expected:
        blob = (tmp_path / name).read_bytes()
        assert blob[:8] == b"\x89PNG\r\n\x1a\n" and len(blob) > 10_000
    assert (tmp_path / "subband_images.safetensors").stat().st_size > 8 * 8 * 16 * 4


# ---------------------------------------------------------------- the command


def test_analyze_command_reports_the_model_latent_and_matches_saved_latents(tmp_path, capsys):
    from lcvae.cli import main
    from lcvae.data import read_video, to_tensor, write_video
    from lcvae.models.io import from_pretrained, save_pretrained
    from lcvae.models.lcvae import LCVAE
    from lcvae.models.presets import get_preset

    torch.manual_seed(0)
    ckpt = save_pretrained(LCVAE(get_preset("lcvae-tiny")), tmp_path / "ckpt")
    rng = np.random.default_rng(1)
    frames = np.clip(rng.normal(0, 30, (33, 32, 32, 3)).cumsum(0) / 6 + 128, 0, 255).astype(np.uint8)
    clip = write_video(tmp_path / "clip.mp4", frames, fps=8, codec="libx264rgb", pix_fmt="rgb24", qp=0)
    out = tmp_path / "analysis"
    assert (
        main(
            [
                "analyze",
                "--model",
                str(ckpt),
                "--data",
                str(clip),
                "--size",
                "32",
                "--out",
                str(out),
                "--no-progress",
                "--no-figures",
            ]
        )
        == 0
    )  # figures: test_analysis_json_and_figures_are_written
    assert "energy share per subband: LLL" in capsys.readouterr().out
    data = json.loads((out / "analysis.json").read_text())
    # Independent: the posterior mean of the clip; the image frame (first latent frame) is excluded.
    model = from_pretrained(ckpt).eval()
    with torch.no_grad():
        z = model.encode(to_tensor(read_video(clip)).unsqueeze(0)).mode().double()
    assert data["latent"]["clips"] == 1 and data["latent"]["frames_per_clip"] == [9]
    assert np.allclose(data["latent"]["channel_energy"], z[:, :, 1:].pow(2).mean((0, 2, 3, 4)).numpy(), rtol=1e-5)
    assert np.allclose(data["latent"]["head_energy"], z[:, :, :1].pow(2).mean((0, 2, 3, 4)).numpy(), rtol=1e-5)
    energy, _ = one_shot(z[:, :, 1:])
    assert np.allclose(data["subbands"]["energy"], energy.numpy(), rtol=1e-5)
    assert data["source"]["frames"] == 33 and data["source"]["clips"] == [str(clip)]
    # The same numbers from the latent saved by `lcvae encode --raw`.
    latent = tmp_path / "z.safetensors"
    assert main(["encode", str(clip), str(latent), "--model", str(ckpt), "--raw"]) == 0
    assert main(["analyze", "--latents", str(latent), "--out", str(tmp_path / "from_file"), "--no-figures"]) == 0
    again = json.loads((tmp_path / "from_file" / "analysis.json").read_text())
    assert np.allclose(again["subbands"]["energy"], data["subbands"]["energy"], rtol=1e-6)
    assert np.allclose(again["leaves"]["energy"], data["leaves"]["energy"], rtol=1e-6)
    assert main(["analyze", "--model", str(ckpt), "--data", str(clip), "--size", "40", "--out", str(out)]) == 2
    assert "multiple of 16" in capsys.readouterr().err
