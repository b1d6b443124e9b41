import pytest
import torch
from torch import nn

from lcvae.models.discriminator import (
    DISCRIMINATOR_PRESETS,
    PatchDiscriminator3D,
    PatchDiscriminator3DConfig,
)

# docs/training.md#discriminator, written out by hand: (in, out, stride, followed by BatchNorm)
PAPER_LAYERS = [
    (3, 64, (2, 2, 2), False),
    (64, 128, (2, 2, 2), True),
    (128, 256, (1, 2, 2), True),
    (256, 512, (1, 2, 2), True),
    (512, 512, (1, 1, 1), True),
    (512, 1, (1, 1, 1), False),
]


def test_paper_layer_list_matches_spec():
    disc = PatchDiscriminator3D(DISCRIMINATOR_PRESETS["paper"])
    convs = [m for m in disc.modules() if isinstance(m, nn.Conv3d)]
    assert [(c.in_channels, c.out_channels, c.stride, c.bias is None) for c in convs] == [
        (i, o, s, bn) for i, o, s, bn in PAPER_LAYERS
    ]
    assert all(c.kernel_size == (3, 3, 3) and c.padding == (1, 1, 1) for c in convs)
    mods = list(disc.main)
    # after every BatchNorm: LeakyReLU(0.2) then Dropout(0.3); after the first conv: LeakyReLU only
    assert isinstance(mods[1], nn.LeakyReLU) and mods[1].negative_slope == 0.2
    assert isinstance(mods[2], nn.Conv3d)
    bn_idx = [i for i, m in enumerate(mods) if isinstance(m, nn.BatchNorm3d)]
    assert len(bn_idx) == 4
    for i in bn_idx:
        assert isinstance(mods[i + 1], nn.LeakyReLU) and mods[i + 1].negative_slope == 0.2
        assert isinstance(mods[i + 2], nn.Dropout) and mods[i + 2].p == 0.3
    assert isinstance(mods[-1], nn.Conv3d) and mods[-1].out_channels == 1


def test_paper_parameter_count_by_hand():
    expected = 0
    for cin, cout, _, bn in PAPER_LAYERS:
        expected += cin * cout * 27  # 3x3x3 kernel
        expected += 2 * cout if bn else cout  # BN affine, or conv bias
    assert expected == 11_744_641
    disc = PatchDiscriminator3D(DISCRIMINATOR_PRESETS["paper"])
    assert sum(p.numel() for p in disc.parameters()) == expected


def test_output_shape_is_patch_grid():
    torch.manual_seed(0)
    disc = PatchDiscriminator3D(DISCRIMINATOR_PRESETS["paper"]).eval()
    with torch.no_grad():
        out = disc(torch.rand(1, 3, 8, 64, 64) * 2 - 1)
    # time 8 -> 4 -> 2 (two temporal strides); space 64 -> 32 -> 16 -> 8 -> 4
    assert out.shape == (1, 1, 2, 4, 4)


def test_tiny_preset_shape_and_odd_sizes():
    disc = PatchDiscriminator3D(DISCRIMINATOR_PRESETS["tiny"]).eval()
    with torch.no_grad():
        out = disc(torch.zeros(2, 3, 5, 17, 16))
    # floor((s - 1) / 2) + 1 per stride-2 axis: T 5->3->2, H 17->9->5, W 16->8->4
    assert out.shape == (2, 1, 2, 5, 4)


def test_init_statistics():
    torch.manual_seed(0)
    disc = PatchDiscriminator3D(DISCRIMINATOR_PRESETS["paper"])
    conv_w = torch.cat([m.weight.flatten() for m in disc.modules() if isinstance(m, nn.Conv3d)])
    assert abs(conv_w.mean().item()) < 1e-3
    assert conv_w.std().item() == pytest.approx(0.02, rel=0.01)
    for m in disc.modules():
        if isinstance(m, nn.Conv3d) and m.bias is not None:
            assert torch.count_nonzero(m.bias) == 0
    bn_w = torch.cat([m.weight for m in disc.modules() if isinstance(m, nn.BatchNorm3d)])
    bn_b = torch.cat([m.bias for m in disc.modules() if isinstance(m, nn.BatchNorm3d)])
    assert bn_w.mean().item() == pytest.approx(1.0, abs=2e-3)
    assert bn_w.std().item() == pytest.approx(0.02, rel=0.1)
    assert torch.count_nonzero(bn_b) == 0


def test_bad_input_is_a_clear_error():
    disc = PatchDiscriminator3D(DISCRIMINATOR_PRESETS["tiny"])
    with pytest.raises(ValueError, match=r"expects \(B, 3, T, H, W\)"):
        disc(torch.zeros(1, 3, 16, 16))
    with pytest.raises(ValueError, match="num_layers"):
        PatchDiscriminator3DConfig(num_layers=0)
