"""Multi-WT latent compression: layout, exactness, masks, packing, causal head, statistics, adaptive."""

from __future__ import annotations

import itertools
import json

import pytest
import torch

from lcvae.compression import Coefficients, LatentCompressor, multi_iwt_reference, multi_wt_reference
from lcvae.masks import (
    LEAF_NAMES,
    CompressionConfig,
    block_mask,
    coefficient_index,
    leaf_block,
    load_mask_json,
    paper_mask,
    reference_mask,
    split_index,
)


def make(c: int = 4, causal: bool = False, **kw) -> LatentCompressor:
    return LatentCompressor(CompressionConfig(**kw), c, causal)


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def walsh(b2: int, b1: int, b0: int) -> torch.Tensor:
    """Temporal sign pattern of leaf (b2 b1 b0) over 8 frames, as the product of the three levels'
    patterns: the 3D level alternates every frame, the first temporal split every 2, the second every 4."""
    n = torch.arange(8)
    level0 = torch.where(n % 2 == 1, -1.0, 1.0) if b0 else torch.ones(8)
    level1 = torch.where((n // 2) % 2 == 1, -1.0, 1.0) if b1 else torch.ones(8)
    level2 = torch.where((n // 4) % 2 == 1, -1.0, 1.0) if b2 else torch.ones(8)
    return (level0 * level1 * level2).double()


# ---------------------------------------------------------------- index bookkeeping


@pytest.mark.parametrize("c", [1, 3, 16])
def test_channel_and_block_formulas_agree_by_enumeration(c):
    seen = []
    for b2, b1, b0, h, w, ch in itertools.product(range(2), range(2), range(2), range(2), range(2), range(c)):
        s = 4 * b0 + 2 * h + w
        spec = 16 * c * b2 + 8 * c * b1 + c * s + ch
        i = coefficient_index(c, leaf_block(b2, b1, b0), 2 * h + w, ch)
        assert i == spec
        assert split_index(c, i) == (leaf_block(b2, b1, b0), 2 * h + w, ch)
        seen.append(i)
    assert sorted(seen) == list(range(32 * c))
    assert LEAF_NAMES[leaf_block(0, 1, 0)] == "LHL" and LEAF_NAMES[leaf_block(1, 0, 0)] == "HLL"


def test_each_basis_pattern_lands_in_its_coefficient_channel():
    """Brute force over all 32C (b2, b1, b0, h, w, c): a latent that is the separable sign pattern of
    those bands in one channel has all its energy in exactly coefficient channel i."""
    c = 2
    comp = make(c)
    for b2, b1, b0, h, w, ch in itertools.product(range(2), range(2), range(2), range(2), range(2), range(c)):
        sig_h = torch.tensor([1.0, -1.0 if h else 1.0]).double().repeat(2)  # H' = 4
        sig_w = torch.tensor([1.0, -1.0 if w else 1.0]).double().repeat(2)
        z = torch.zeros(1, c, 8, 4, 4, dtype=torch.float64)
        z[0, ch] = walsh(b2, b1, b0).view(8, 1, 1) * sig_h.view(1, 4, 1) * sig_w.view(1, 1, 4)
        energy = comp.analysis(z).groups.pow(2).sum(dim=(0, 2, 3, 4))
        i = 16 * c * b2 + 8 * c * b1 + c * (4 * b0 + 2 * h + w) + ch
        assert energy[i].item() == pytest.approx(z.pow(2).sum().item(), rel=1e-12)
        assert (energy.sum() - energy[i]).item() < 1e-20


@pytest.mark.parametrize("bands", list(itertools.product(range(2), repeat=3)))
def test_walsh_pattern_lands_in_its_leaf_block(gen, bands):
    c = 3
    spatial = torch.randn(2, c, 1, 4, 6, generator=gen, dtype=torch.float64)
    z = spatial * walsh(*bands).view(1, 1, 8, 1, 1)
    energy = make(c).analysis(z).groups.pow(2).sum(dim=(0, 2, 3, 4)).view(8, 4 * c).sum(1)
    j = leaf_block(*bands)
    assert energy[j].item() == pytest.approx(z.pow(2).sum().item(), rel=1e-12)
    assert (energy.sum() - energy[j]).item() < 1e-20


def test_latent_constant_in_time_has_only_lll_energy(gen):
    z = torch.randn(1, 4, 1, 6, 4, generator=gen, dtype=torch.float64).expand(1, 4, 16, 6, 4)
    groups = make(4).analysis(z).groups  # (1, 128, 2, 3, 2)
    assert groups[:, 16:].abs().max().item() < 1e-13
    assert groups[:, :16].abs().max().item() > 0.1


# ---------------------------------------------------------------- plain twins and exactness

# Masks that keep only some spatial subbands of a leaf, in most channels.
LL_ONLY = [coefficient_index(8, j, 0, c) for j in range(8) for c in range(8)]
LOW_LEAVES_LL_LH = sorted(coefficient_index(8, j, sp, c) for j in range(4) for sp in (0, 1) for c in range(8))
CONFIGS = [
    dict(mask="paper"),
    dict(mask="keep25"),
    dict(mask="keep75"),
    dict(mask="reference"),
    dict(mask="custom", kept_indices=LL_ONLY),
    dict(mask="paper", causal=True),
    dict(mask="custom", kept_indices=LOW_LEAVES_LL_LH, causal=True),
]


@pytest.mark.parametrize("kw", CONFIGS, ids=lambda kw: f"{kw['mask']}-{'causal' if kw.get('causal') else 'nc'}")
def test_transform_and_training_path_equal_wavelet_composition(gen, kw):
    comp = make(8, **kw)
    causal = kw.get("causal", False)
    z = torch.randn(2, 8, 16 + causal, 4, 6, generator=gen, dtype=torch.float64)
    body = z[:, :, 1:] if causal else z
    plain = multi_wt_reference(body)
    coeffs = comp.analysis(z)
    torch.testing.assert_close(coeffs.groups, plain, rtol=0, atol=1e-13)
    masked = plain * comp.keep.double().view(1, -1, 1, 1, 1)
    expected = multi_iwt_reference(masked)
    if causal:
        expected = torch.cat((z[:, :, :1], expected), dim=2)
    torch.testing.assert_close(comp.synthesis(Coefficients(masked, coeffs.head)), expected, rtol=0, atol=1e-13)
    torch.testing.assert_close(comp(z), expected, rtol=0, atol=1e-13)


def plain_training_path(comp: LatentCompressor, z: torch.Tensor) -> torch.Tensor:
    """synthesis(mask(analysis(z))) as the literal composition of the wavelet functions."""
    body = z[:, :, 1:] if comp.causal else z
    out = multi_iwt_reference(multi_wt_reference(body) * comp.keep.to(z.dtype).view(1, -1, 1, 1, 1))
    return torch.cat((z[:, :, :1], out), dim=2) if comp.causal else out


def from_leaf_sets(c: int, sets: dict[tuple[int, int], set[int]]) -> list[int]:
    return sorted(coefficient_index(c, j, s, ch) for (ch, s), leaves in sets.items() for j in leaves)


def irregular_mask(c: int, kind: str, seed: int) -> list[int]:
    """Custom masks the reference never uses; each a multiple of 32 coefficients."""
    rng = torch.Generator().manual_seed(seed)
    if kind == "uniform":  # any 32k coefficients
        k = 32 * int(torch.randint(1, c + 1, (1,), generator=rng))
        return sorted(torch.randperm(32 * c, generator=rng)[:k].tolist())
    if kind == "paper_swaps":  # the paper mask with a few kept/dropped coefficients swapped
        kept, dropped = torch.tensor(paper_mask(c)), torch.tensor(sorted(set(range(32 * c)) - set(paper_mask(c))))
        m = int(torch.randint(1, 4, (1,), generator=rng))
        out = (
            kept[torch.randperm(len(kept), generator=rng)[m:]].tolist()
            + dropped[torch.randperm(len(dropped), generator=rng)[:m]].tolist()
        )
        return sorted(out)
    if kind == "four_sets":  # every channel keeps four different leaf sets in its four subbands
        sets = {}
        for ch in range(c):
            order = torch.randperm(8, generator=rng).tolist()
            for s, n in zip(torch.randperm(4, generator=rng).tolist(), [1, 3, 5, 7]):  # 16 leaves per channel
                sets[ch, s] = set(order[:n])
        return from_leaf_sets(c, sets)
    raise ValueError(kind)


@pytest.mark.parametrize("c", [8, 16, 32])
@pytest.mark.parametrize("dtype,atol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_training_path_equals_plain_twin_for_reference_masks(gen, c, dtype, atol):
    comp = make(c, mask="reference").to(dtype)
    for shape in [(2, c, 16, 4, 6), (1, c, 8, 6, 16)]:
        z = torch.randn(*shape, generator=gen, dtype=torch.float64)
        torch.testing.assert_close(comp(z.to(dtype)).double(), plain_training_path(comp, z), rtol=0, atol=atol)


CUSTOM = [
    (c, kind, seed)
    for c, kind in [(1, "uniform"), (3, "uniform"), (4, "paper_swaps"), (8, "four_sets")]
    for seed in (0, 1, 2)
]


@pytest.mark.parametrize("c,kind,seed", CUSTOM, ids=[f"{c}-{k}-{s}" for c, k, s in CUSTOM])
def test_training_path_equals_plain_twin_for_custom_masks(gen, c, kind, seed):
    kept = irregular_mask(c, kind, seed)
    causal = seed == 2
    z = torch.randn(2, c, 16 + causal, 4, 12, generator=gen, dtype=torch.float64)
    for dtype, atol in [(torch.float64, 1e-12), (torch.float32, 1e-5)]:
        comp = make(c, mask="custom", kept_indices=kept, causal=causal).to(dtype)
        torch.testing.assert_close(comp(z.to(dtype)).double(), plain_training_path(comp, z), rtol=0, atol=atol)


def test_training_path_gradients():
    comp = make(8, mask="reference").double()
    x = torch.randn(1, 8, 8, 2, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(comp, (x,), fast_mode=True)
    weights = torch.randn(1, 8, 8, 2, 4, dtype=torch.float64)
    (grad,) = torch.autograd.grad((comp(x) * weights).sum(), x)
    torch.testing.assert_close(grad, plain_training_path(comp, weights), rtol=0, atol=1e-12)  # P is symmetric


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-6), (torch.float64, 1e-12)])
def test_analysis_synthesis_round_trip(gen, causal, dtype, tol):
    comp = make(4, causal=causal)
    z = torch.randn(2, 4, 16 + causal, 6, 4, generator=gen, dtype=dtype)
    assert (comp.synthesis(comp.analysis(z)) - z).abs().max().item() < tol


def test_energy_is_preserved(gen):
    comp = make(4, causal=True)
    z = torch.randn(2, 4, 17, 6, 4, generator=gen, dtype=torch.float64)
    co = comp.analysis(z)
    total = co.groups.pow(2).sum() + co.head.pow(2).sum()
    assert total.item() == pytest.approx(z.pow(2).sum().item(), rel=1e-12)


def test_bfloat16_and_gradients(gen):
    comp = make(16, mask="reference")
    z = torch.randn(1, 16, 8, 4, 4, generator=gen)
    out = comp(z.bfloat16())
    assert out.dtype == torch.bfloat16
    assert (out.float() - comp(z)).abs().max().item() < 0.05
    small = make(2, mask="custom", kept_indices=list(range(0, 64, 2)))
    x = torch.randn(1, 2, 8, 2, 2, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(small, (x,))


# ---------------------------------------------------------------- masks


def test_named_block_masks():
    c = 4
    assert paper_mask(c) == block_mask(c, [0, 1, 2, 4])
    assert make(c, mask="paper").kept_per_block == [16, 16, 16, 0, 16, 0, 0, 0]
    assert make(c, mask="keep25").kept_per_block == [16, 16, 0, 0, 0, 0, 0, 0]
    assert make(c, mask="keep75").kept_per_block == [16] * 6 + [0, 0]
    assert [make(c, mask=m).kept_fraction for m in ("keep25", "paper", "keep75")] == [0.25, 0.5, 0.75]
    with pytest.raises(ValueError, match="leaf blocks are 0..7"):
        block_mask(c, [8])


@pytest.mark.parametrize(
    "c,counts",
    [(8, [32, 30, 30, 2, 30, 2, 2, 0]), (16, [64, 60, 60, 4, 60, 4, 4, 0]), (32, [124, 124, 124, 4, 124, 4, 4, 4])],
)
def test_reference_mask_counts_and_positions(c, counts):
    kept = reference_mask(c)
    assert len(kept) == 16 * c
    assert make(c, mask="reference").kept_per_block == counts
    kept_set = set(kept)
    for j, n in enumerate(counts):
        block = range(4 * c * j, 4 * c * (j + 1))
        assert [i for i in block if i in kept_set] == list(block)[:n]  # the first n of each block
    # blocks 1, 2, 4 drop only spatial-HH channels; blocks 3, 5, 6 keep only spatial-LL ones
    assert all(
        split_index(c, i)[1] == 3 for j in (1, 2, 4) for i in range(4 * c * j, 4 * c * (j + 1)) if i not in kept_set
    )
    assert all(split_index(c, i)[1] == 0 for i in kept if split_index(c, i)[0] in (3, 5, 6))


def test_reference_mask_rejects_other_channel_counts():
    with pytest.raises(ValueError, match=r"latent_channels in \[8, 16, 32\], got 4; use mask='paper'"):
        reference_mask(4)


def test_mask_json_import(tmp_path):
    good = tmp_path / "mask.json"
    indices = paper_mask(2)  # 32 of 64
    good.write_text(json.dumps({"selected_indices": indices, "note": "from training"}))
    loaded = load_mask_json(good, latent_channels=2)
    assert loaded == indices
    comp = make(2, mask="custom", kept_indices=loaded)
    assert comp.kept_index.tolist() == indices
    cases = {
        "unsorted": ({"selected_indices": list(reversed(indices))}, "sorted and unique"),
        "duplicate": ({"selected_indices": [0] + indices[:31]}, "sorted and unique"),
        "range": ({"selected_indices": indices[1:] + [64]}, "in [0, 64)"),
        "count": ({"selected_indices": indices[:30]}, "multiple of 32 so it packs into whole channels, got 30; use 32"),
        "key": ({"indices": indices}, "'selected_indices' list"),
        "type": ({"selected_indices": "0,1"}, "must be a list"),
        "float": ({"selected_indices": [0.5] * 32}, "must be integers"),
    }
    for name, (content, message) in cases.items():
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(content))
        with pytest.raises(ValueError) as info:
            load_mask_json(path, latent_channels=2)
        assert message in str(info.value), name
        assert str(path) in str(info.value)


# ---------------------------------------------------------------- config


def test_config_round_trip_and_strict_keys():
    cfg = CompressionConfig(mask="custom", kept_indices=paper_mask(4))
    assert CompressionConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.to_dict() == {"mask": "custom", "kept_indices": paper_mask(4), "adaptive": False}
    with pytest.raises(ValueError, match="did you mean 'kept_indices'"):
        CompressionConfig.from_dict({"kept_indice": [1]})
    with pytest.raises(ValueError, match="did you mean 'paper'"):
        CompressionConfig(mask="papr")
    with pytest.raises(ValueError, match="required with mask='custom'"):
        CompressionConfig(mask="custom")
    with pytest.raises(ValueError, match="must lie in \\[0, 128\\) for 4 latent channels"):
        CompressionConfig(mask="custom", kept_indices=[*range(31), 200]).resolved_indices(4)


def test_keep50_is_rejected_when_built_and_read_as_paper_from_saved_configs(caplog):
    with pytest.raises(ValueError, match="'keep50' was removed.*use mask='paper'"):
        CompressionConfig(mask="keep50")
    with caplog.at_level("INFO", logger="lcvae.masks"):
        cfg = CompressionConfig.from_dict({"mask": "keep50", "adaptive": True})
    assert cfg == CompressionConfig(mask="paper", adaptive=True)
    assert "'keep50' is read as 'paper'" in caplog.text
    assert cfg.resolved_indices(4) == block_mask(4, [0, 1, 2, 4])


# ---------------------------------------------------------------- packing


def test_pack_shape_matches_half_channel_latent(gen):
    comp = make(16, mask="reference")
    z = torch.randn(1, 16, 8, 32, 32, generator=gen)
    assert comp.encode_latent(z).shape == (1, 8, 8, 32, 32)
    assert make(16, mask="keep25").encode_latent(z).shape == (1, 4, 8, 32, 32)


def test_pack_places_kept_coefficients_by_the_documented_bijection(gen):
    c, g = 4, 2
    comp = make(c, mask="custom", kept_indices=list(range(1, 128, 2)))  # K = 64, C' = 2
    groups = torch.randn(1, 32 * c, g, 2, 3, generator=gen, dtype=torch.float64)
    x = comp.pack(Coefficients(groups))
    assert x.shape == (1, 2, 8 * g, 4, 6)
    kept = comp.kept_index.tolist()
    for k, i in enumerate(kept):
        f, rest = divmod(k, 4 * 2)
        cp, pq = divmod(rest, 4)
        p, q = divmod(pq, 2)
        for gg in range(g):
            for h in range(2):
                for w in range(3):
                    assert x[0, cp, 8 * gg + f, 2 * h + p, 2 * w + q].item() == groups[0, i, gg, h, w].item()


@pytest.mark.parametrize("mask,causal", [("paper", False), ("reference", False), ("paper", True), ("keep25", True)])
def test_pack_unpack_is_a_bijection_on_kept_coefficients(gen, mask, causal):
    c = 8
    comp = make(c, mask=mask, causal=causal)
    z = torch.randn(2, c, 16 + causal, 4, 6, generator=gen, dtype=torch.float64)
    coeffs = comp.analysis(z)
    back = comp.unpack(comp.pack(coeffs))
    assert torch.equal(back.groups, comp.mask(coeffs).groups)
    if causal:
        assert torch.equal(back.head, coeffs.head)
    x = torch.randn(2, comp.packed_channels, comp.head_frames + 16, 4, 6, generator=gen, dtype=torch.float64)
    assert torch.equal(comp.pack(comp.unpack(x)), x)
    torch.testing.assert_close(comp.decode_latent(comp.encode_latent(z)), comp(z), rtol=0, atol=1e-13)


def test_causal_head_frame_passes_uncompressed(gen):
    c = 8
    comp = make(c, causal=True)
    z = torch.randn(1, c, 9, 4, 4, generator=gen, dtype=torch.float64)
    coeffs = comp.analysis(z)
    assert torch.equal(coeffs.head, z[:, :, :1])
    assert torch.equal(comp(z)[:, :, 0], z[:, :, 0])
    packed = comp.encode_latent(z)
    assert packed.shape == (1, 4, 2 + 8, 4, 4)
    assert torch.equal(packed[:, :, 0], z[:, :4, 0]) and torch.equal(packed[:, :, 1], z[:, 4:, 0])
    image = z[:, :, :1]  # T' = 1: an image, no groups
    assert comp.encode_latent(image).shape == (1, 4, 2, 4, 4)
    assert torch.equal(comp.decode_latent(comp.encode_latent(image)), image)
    with pytest.raises(ValueError, match="does not divide; use a 25 % or 50 % mask"):
        make(8, mask="keep75", causal=True).encode_latent(z)


# ---------------------------------------------------------------- adaptive


def test_adaptive_keeps_highest_energy_channels_and_reports_overlap(gen):
    c = 2  # 64 coefficient channels, K = 32
    comp = make(c, adaptive=True)
    chosen = sorted(torch.randperm(64, generator=gen)[:32].tolist())
    groups = 0.01 * torch.randn(3, 64, 1, 2, 2, generator=gen, dtype=torch.float64)
    groups[:, chosen] = torch.randn(3, 32, 1, 2, 2, generator=gen, dtype=torch.float64).sign() * 5
    z = multi_iwt_reference(groups)
    out = comp(z)
    assert comp.last_selection.tolist() == chosen
    keep = torch.zeros(64, dtype=torch.float64)
    keep[chosen] = 1
    torch.testing.assert_close(out, multi_iwt_reference(groups * keep.view(1, -1, 1, 1, 1)), rtol=0, atol=1e-12)
    expected_overlap = len(set(chosen) & set(paper_mask(c))) / 32
    assert comp.overlap_with(paper_mask(c)) == expected_overlap
    assert comp.overlap_with(chosen) == 1.0
    with pytest.raises(ValueError, match="no fixed kept set"):
        comp.encode_latent(z)
    with pytest.raises(ValueError, match="no adaptive selection yet"):
        make(c, adaptive=True).overlap_with(chosen)


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "causal,shape,message",
    [
        (False, (1, 4, 10, 4, 4), "T' = 8G latent frames (groups of 8), got 10; use 8 or 16"),
        (False, (1, 4, 4, 4, 4), "got 4; use 8"),
        (True, (1, 4, 8, 4, 4), "T' = 1 + 8G latent frames, got 8; use 1 or 9"),
        (True, (1, 4, 18, 4, 4), "got 18; use 17 or 25"),
        (False, (1, 4, 8, 5, 4), "even, got 5x4; use 6x4"),
        (False, (1, 3, 8, 4, 4), "expected a latent (B, 4, T', H', W')"),
    ],
)
def test_frame_rule_errors(causal, shape, message):
    with pytest.raises(ValueError) as info:
        make(4, causal=causal).analysis(torch.zeros(shape))
    assert message in str(info.value)


def test_unpack_rejects_bad_shapes():
    comp = make(4, causal=True)
    with pytest.raises(ValueError, match="2 \\+ 8G frames"):
        comp.unpack(torch.zeros(1, 2, 9, 4, 4))
    with pytest.raises(ValueError, match=r"expected a packed latent \(B, 2, F"):
        comp.unpack(torch.zeros(1, 3, 10, 4, 4))


def test_odd_channel_count_trains_but_does_not_pack(gen):
    comp = make(3)  # paper mask: K = 48, not whole packed channels
    z = torch.randn(1, 3, 8, 2, 2, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(comp(z), multi_iwt_reference(comp.mask(comp.analysis(z)).groups), rtol=0, atol=1e-13)
    with pytest.raises(ValueError, match="multiple of 32, got 48"):
        comp.encode_latent(z)
