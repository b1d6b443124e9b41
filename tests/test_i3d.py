"""I3D: pytorch-i3d module tree and state-dict layout, a mixed block recomputed by hand, TF SAME padding,
shapes, and both weight loaders."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

from lcvae.perceptual import (
    I3DExtractor,
    InceptionI3d,
    TorchScriptI3D,
    WeightsUnavailable,
    load_i3d,
    preprocess_clips,
)
from lcvae.perceptual.i3d import MaxPool3dSame, Unit3D

# The Inception-v1 / I3D table (Carreira & Zisserman 2017, as laid out by pytorch-i3d):
# stem units (name, cin, cout, kernel) and mixed blocks (name, cin, b0, b1a, b1b, b2a, b2b, b3b).
STEM = [("Conv3d_1a_7x7", 3, 64, 7), ("Conv3d_2b_1x1", 64, 64, 1), ("Conv3d_2c_3x3", 64, 192, 3)]
BLOCKS = [
    ("Mixed_3b", 192, 64, 96, 128, 16, 32, 32),
    ("Mixed_3c", 256, 128, 128, 192, 32, 96, 64),
    ("Mixed_4b", 480, 192, 96, 208, 16, 48, 64),
    ("Mixed_4c", 512, 160, 112, 224, 24, 64, 64),
    ("Mixed_4d", 512, 128, 128, 256, 24, 64, 64),
    ("Mixed_4e", 512, 112, 144, 288, 32, 64, 64),
    ("Mixed_4f", 528, 256, 160, 320, 32, 128, 128),
    ("Mixed_5b", 832, 256, 160, 320, 32, 128, 128),
    ("Mixed_5c", 832, 384, 192, 384, 48, 128, 128),
]


def pytorch_i3d_shapes() -> dict[str, tuple]:
    """Key -> shape of a pytorch-i3d (piergiaj) Kinetics-400 state dict, old-PyTorch style
    (no num_batches_tracked), written from the table above."""
    shapes = {}

    def unit(prefix, cin, cout, k):
        shapes[f"{prefix}.conv3d.weight"] = (cout, cin, k, k, k)
        for p in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{prefix}.bn.{p}"] = (cout,)

    for name, cin, cout, k in STEM:
        unit(name, cin, cout, k)
    for name, cin, b0, b1a, b1b, b2a, b2b, b3b in BLOCKS:
        unit(f"{name}.b0", cin, b0, 1)
        unit(f"{name}.b1a", cin, b1a, 1)
        unit(f"{name}.b1b", b1a, b1b, 3)
        unit(f"{name}.b2a", cin, b2a, 1)
        unit(f"{name}.b2b", b2a, b2b, 3)
        unit(f"{name}.b3b", cin, b3b, 1)
    shapes["logits.conv3d.weight"] = (400, 1024, 1, 1, 1)
    shapes["logits.conv3d.bias"] = (400,)
    return shapes


def random_pytorch_i3d_state(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in pytorch_i3d_shapes().items():
        if key.endswith("conv3d.weight"):
            fan_in = shape[1] * shape[2] * shape[3] * shape[4]
            state[key] = torch.randn(shape, generator=g) * (2.0 / fan_in) ** 0.5
        elif key.endswith("running_var") or key.endswith("bn.weight"):
            state[key] = torch.rand(shape, generator=g) + 0.5
        else:
            state[key] = torch.randn(shape, generator=g) * 0.1
    return state


@pytest.fixture(scope="module")
def clip():
    return torch.rand(1, 3, 9, 40, 48, generator=torch.Generator().manual_seed(5)) * 2 - 1


def test_parameter_names_and_shapes_follow_pytorch_i3d():
    ours = {k: tuple(v.shape) for k, v in InceptionI3d().state_dict().items() if not k.endswith("num_batches_tracked")}
    assert ours == pytorch_i3d_shapes()


def test_pytorch_i3d_file_loads_strictly_and_drives_the_extractor(tmp_path, clip):
    state = random_pytorch_i3d_state()
    torch.save(state, tmp_path / "rgb_imagenet.pt")
    extractor = load_i3d(tmp_path / "rgb_imagenet.pt")
    assert isinstance(extractor, I3DExtractor)
    reference = InceptionI3d().eval()
    reference.load_state_dict(state, strict=True)
    with torch.no_grad():
        expected = reference.features(preprocess_clips(clip))
    got = extractor(clip)
    assert got.shape == (1, 400)
    assert expected.abs().max() > 1e-3
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_safetensors_i3d_file_loads_every_tensor(tmp_path):
    state = random_pytorch_i3d_state(seed=1)
    save_file(state, str(tmp_path / "i3d.safetensors"))
    loaded = load_i3d(tmp_path / "i3d.safetensors").model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())


def test_extra_or_missing_keys_fail_loudly(tmp_path):
    state = random_pytorch_i3d_state()
    state["Mixed_6a.b0.conv3d.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(RuntimeError, match="Mixed_6a"):
        load_i3d(tmp_path / "bad.pt")


def test_output_shapes_at_224_and_at_the_smallest_accepted_size():
    model = InceptionI3d().eval()
    with torch.no_grad():
        x = torch.zeros(1, 3, 16, 224, 224)
        assert model(x).shape == (1, 400, 1)
        assert model.features(x).shape == (1, 400)
        small = torch.zeros(1, 3, 9, 193, 193)
        assert model.features(small, kind="pool").shape == (1, 1024)
    with pytest.raises(ValueError, match="at least 9 frames"):
        model(torch.zeros(1, 3, 8, 224, 224))


def test_unit3d_same_padding_equals_explicit_tf_padding():
    torch.manual_seed(0)
    unit = Unit3D(2, 4, (7, 7, 7), (2, 2, 2), norm=False, relu=False)
    x = torch.randn(1, 2, 10, 11, 12)
    # TF SAME, k=7, s=2: even size -> total pad 5 (2 front, 3 back); odd size -> 6 (3, 3)
    manual = F.conv3d(F.pad(x, (2, 3, 3, 3, 2, 3)), unit.conv3d.weight, stride=2)
    out = unit(x)
    assert out.shape == (1, 4, 5, 6, 6)  # ceil(size / stride)
    torch.testing.assert_close(out, manual)


def test_maxpool_same_padding_equals_explicit_padding():
    x = torch.rand(1, 2, 3, 8, 9)  # post-ReLU values are ≥ 0, as in the network
    pool = MaxPool3dSame((1, 3, 3), (1, 2, 2))
    manual = F.max_pool3d(F.pad(x, (1, 1, 0, 1, 0, 0)), (1, 3, 3), (1, 2, 2))
    out = pool(x)
    assert out.shape == (1, 2, 3, 4, 5)
    torch.testing.assert_close(out, manual)


def test_preprocess_resizes_each_frame_and_keeps_values():
    x = torch.rand(2, 3, 4, 30, 50) * 2 - 1
    out = preprocess_clips(x)
    assert out.shape == (2, 3, 4, 224, 224)
    frame = F.interpolate(x[1, :, 2][None], size=(224, 224), mode="bilinear", align_corners=False)
    torch.testing.assert_close(out[1, :, 2], frame[0])
    same = torch.rand(1, 3, 2, 224, 224)
    assert preprocess_clips(same) is same


class TinyDetector(nn.Module):
    """Stands in for i3d_torchscript.pt: same call signature; echoes the flags it received."""

    def forward(
        self, x: torch.Tensor, rescale: bool = True, resize: bool = False, return_features: bool = False
    ) -> torch.Tensor:
        flags = torch.tensor([float(rescale), float(resize), float(return_features)])
        return torch.cat([x.mean(dim=(2, 3, 4)), flags.expand(x.shape[0], 3)], dim=1)


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
def test_torchscript_detector_is_called_like_stylegan_v(tmp_path):
    path = tmp_path / "i3d_torchscript.pt"
    torch.jit.save(torch.jit.script(TinyDetector()), str(path))
    extractor = load_i3d(path)
    assert isinstance(extractor, TorchScriptI3D)
    x = torch.rand(2, 3, 5, 6, 7) * 2 - 1
    out = extractor(x)
    torch.testing.assert_close(out[:, :3], x.mean(dim=(2, 3, 4)))
    assert out[:, 3:].tolist() == [[0.0, 1.0, 1.0]] * 2  # rescale=False, resize=True, features


def test_missing_weights_say_what_to_provide(tmp_path):
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path))
    try:
        with pytest.raises(WeightsUnavailable) as err:
            load_i3d()
    finally:
        torch.hub.set_dir(old)
    message = str(err.value)
    for needle in ("i3d_torchscript.pt", "rgb_imagenet.pt", str(tmp_path / "checkpoints")):
        assert needle in message
    with pytest.raises(WeightsUnavailable, match="nope.pt does not exist"):
        load_i3d(tmp_path / "nope.pt")


# pytorch-i3d (piergiaj/pytorch-i3d, pytorch_i3d.py), read off its source: InceptionI3d registers its
# end points in this order with add_module, then `logits`; an InceptionModule holds b0, b1a, b1b,
# b2a, b2b, b3a (a parameter-free max pool) and b3b; a Unit3D holds `conv3d` and, with batch norm,
# `bn` (BatchNorm3d eps 0.001, momentum 0.01).
PYTORCH_I3D_CHILDREN = [
    "Conv3d_1a_7x7",
    "MaxPool3d_2a_3x3",
    "Conv3d_2b_1x1",
    "Conv3d_2c_3x3",
    "MaxPool3d_3a_3x3",
    "Mixed_3b",
    "Mixed_3c",
    "MaxPool3d_4a_3x3",
    "Mixed_4b",
    "Mixed_4c",
    "Mixed_4d",
    "Mixed_4e",
    "Mixed_4f",
    "MaxPool3d_5a_2x2",
    "Mixed_5b",
    "Mixed_5c",
    "logits",
]
PYTORCH_I3D_MIXED_4B_KEYS = {
    f"Mixed_4b.{branch}.{key}"
    for branch in ("b0", "b1a", "b1b", "b2a", "b2b", "b3b")
    for key in ("conv3d.weight", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var")
}


def test_module_tree_and_names_are_pytorch_i3d_s():
    model = InceptionI3d()
    assert [name for name, _ in model.named_children()] == PYTORCH_I3D_CHILDREN  # also the forward order
    keys = {k for k in model.state_dict() if not k.endswith("num_batches_tracked")}
    assert {k for k in keys if k.startswith("Mixed_4b.")} == PYTORCH_I3D_MIXED_4B_KEYS
    assert {k for k in keys if k.startswith("logits.")} == {"logits.conv3d.weight", "logits.conv3d.bias"}
    assert {k for k in keys if k.startswith("Conv3d_1a_7x7.")} == {
        "Conv3d_1a_7x7.conv3d.weight",
        "Conv3d_1a_7x7.bn.weight",
        "Conv3d_1a_7x7.bn.bias",
        "Conv3d_1a_7x7.bn.running_mean",
        "Conv3d_1a_7x7.bn.running_var",
    }
    bn = model.Mixed_4b.b1b.bn
    assert (bn.eps, bn.momentum) == (0.001, 0.01)


def _unit_by_hand(x: torch.Tensor, unit: Unit3D, pad: int) -> torch.Tensor:
    """Conv3d (stride 1, `pad` zeros on every side) -> eval BatchNorm written out -> ReLU."""
    y = F.conv3d(F.pad(x, [pad] * 6), unit.conv3d.weight)
    bn = unit.bn
    shape = (1, -1, 1, 1, 1)
    y = (y - bn.running_mean.view(shape)) / torch.sqrt(bn.running_var.view(shape) + 0.001)
    return torch.relu(y * bn.weight.view(shape) + bn.bias.view(shape))


def test_inception_block_branches_in_pytorch_i3d_order():
    """One mixed block computed branch by branch with plain conv3d / max_pool3d calls, in
    pytorch-i3d's order: b0 1x1; b1 1x1 -> 3x3x3; b2 1x1 -> 3x3x3; b3 3x3x3 max pool (stride 1,
    SAME zero padding) -> 1x1; concatenated in that order. Branch widths all differ, so a swapped
    branch changes the layout."""
    from lcvae.perceptual.i3d import InceptionBlock

    widths = (2, 3, 4, 2, 5, 6)  # b0, b1a, b1b, b2a, b2b, b3b
    block = InceptionBlock(7, widths).eval()
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, tensor in block.state_dict().items():
            if name.endswith("num_batches_tracked"):
                continue
            values = torch.randn(tensor.shape, generator=g) * 0.5
            tensor.copy_(values.abs() + 0.5 if name.endswith(("running_var", "bn.weight")) else values)
    x = torch.randn(2, 7, 4, 5, 6, generator=g)
    b0 = _unit_by_hand(x, block.b0, 0)
    b1 = _unit_by_hand(_unit_by_hand(x, block.b1a, 0), block.b1b, 1)
    b2 = _unit_by_hand(_unit_by_hand(x, block.b2a, 0), block.b2b, 1)
    b3 = _unit_by_hand(F.max_pool3d(F.pad(x, [1] * 6), 3, stride=1), block.b3b, 0)
    expected = torch.cat([b0, b1, b2, b3], dim=1)
    with torch.no_grad():
        out = block(x)
    assert out.shape == (2, 2 + 4 + 5 + 6, 4, 5, 6)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
