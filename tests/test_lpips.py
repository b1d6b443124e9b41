"""Our LPIPS / ST-LPIPS against the lpips and stlpips-pytorch packages' own code.

Both packages import torchvision at import time, and torchvision cannot be installed here. The
fixture below puts a minimal fake ``torchvision.models`` into sys.modules whose alexnet/vgg16
return torchvision's ``features`` stacks, written out here independently of lcvae, with seeded
random weights. Each package then runs its own LPIPS code on the same backbone weights.
"""

import copy
import sys
import types

import pytest
import torch
import torch.nn as nn
from safetensors.torch import save_file

from lcvae.perceptual import WeightsUnavailable, load_lpips, load_st_lpips, lpips_video
from lcvae.perceptual.lpips import LPIPS, LPIPSConfig

HUB_NAMES = {"alex": "alexnet-owt-7be5be79.pth", "vgg": "vgg16-397923af.pth"}
SIZE = {"alex": 64, "vgg": 32}  # VGG16 is ~20x AlexNet's cost per pixel


def torchvision_alexnet_features() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 64, 11, 4, 2),
        nn.ReLU(True),
        nn.MaxPool2d(3, 2),
        nn.Conv2d(64, 192, 5, padding=2),
        nn.ReLU(True),
        nn.MaxPool2d(3, 2),
        nn.Conv2d(192, 384, 3, padding=1),
        nn.ReLU(True),
        nn.Conv2d(384, 256, 3, padding=1),
        nn.ReLU(True),
        nn.Conv2d(256, 256, 3, padding=1),
        nn.ReLU(True),
        nn.MaxPool2d(3, 2),
    )


def torchvision_vgg16_features() -> nn.Sequential:
    layers, cin = [], 3
    for v in [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(cin, v, 3, padding=1), nn.ReLU(True)]
            cin = v
    return nn.Sequential(*layers)


def seeded_features(net: str) -> nn.Sequential:
    torch.manual_seed({"alex": 10, "vgg": 11}[net])
    feats = torchvision_alexnet_features() if net == "alex" else torchvision_vgg16_features()
    for m in feats:
        if isinstance(m, nn.Conv2d):  # fan-in scaling keeps activations O(1) through 13 layers
            nn.init.normal_(m.weight, std=(2.0 / m.weight[0].numel()) ** 0.5)
            nn.init.uniform_(m.bias, -0.1, 0.1)
    return feats


@pytest.fixture
def reference_packages(monkeypatch):
    """Import the lpips and stlpips packages against a fake torchvision; undo it afterwards."""
    before = set(sys.modules)

    class FakeModel(nn.Module):
        def __init__(self, net):
            super().__init__()
            self.features = copy.deepcopy(seeded_features(net))

    tv = types.ModuleType("torchvision")
    tv.models = types.ModuleType("torchvision.models")
    tv.models.alexnet = lambda *a, **k: FakeModel("alex")
    tv.models.vgg16 = lambda *a, **k: FakeModel("vgg")
    ipython = types.ModuleType("IPython")
    ipython.embed = lambda *a, **k: None
    torchsummary = types.ModuleType("torchsummary")
    torchsummary.summary = lambda *a, **k: None
    for name, module in [
        ("torchvision", tv),
        ("torchvision.models", tv.models),
        ("IPython", ipython),
        ("torchsummary", torchsummary),
    ]:
        monkeypatch.setitem(sys.modules, name, module)
    import lpips
    from stlpips_pytorch import stlpips

    yield lpips, stlpips
    for name in set(sys.modules) - before:
        if name.split(".")[0] in {"lpips", "stlpips_pytorch"}:
            del sys.modules[name]


def _images(seed, n=2, size=64):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, size, size, generator=g) * 2 - 1
    smooth = torch.nn.functional.avg_pool2d(x, 5, 1, 2)
    return x, (0.5 * x + 0.5 * smooth).clamp(-1, 1)


def _save_torchvision_state(net, tmp_path, fmt):
    state = {f"features.{k}": v for k, v in seeded_features(net).state_dict().items()}
    state["classifier.1.weight"] = torch.zeros(2, 2)  # full torchvision files carry a classifier
    path = tmp_path / f"{net}.{fmt}"
    if fmt == "safetensors":
        save_file(state, str(path))
    else:
        torch.save(state, path)
    return path


@pytest.mark.parametrize("net,fmt", [("alex", "pth"), ("vgg", "safetensors")])
def test_lpips_equals_reference_package_on_same_backbone(net, fmt, tmp_path, reference_packages):
    lpips_pkg, _ = reference_packages
    ours = load_lpips(net, backbone_path=_save_torchvision_state(net, tmp_path, fmt))
    ref = lpips_pkg.LPIPS(net=net, verbose=False).eval()
    x, y = _images(0, size=SIZE[net])
    with torch.no_grad():
        expected = ref(x, y).flatten()
        got = ours(x, y)
    assert ours.name == "LPIPS"
    assert expected.min() > 1e-3  # a real comparison, not 0 == 0
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_st_lpips_equals_stlpips_package_with_shipped_weights(net, reference_packages):
    _, stlpips = reference_packages
    ref = stlpips.LPIPS(net=net, variant="shift_tolerant", verbose=False).eval()
    ours = load_st_lpips(net)
    x, y = _images(1, size=SIZE[net])
    with torch.no_grad():
        expected = ref(x, y).flatten()
        got = ours(x, y)
    assert ours.name == "ST-LPIPS"
    assert expected.min() > 1e-3
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_st_lpips_is_zero_on_identical_and_symmetric_positive_otherwise():
    model = load_st_lpips("alex")
    x, y = _images(2, size=48)
    with torch.no_grad():
        assert model(x, x).abs().max().item() < 1e-7
        d_xy, d_yx = model(x, y), model(y, x)
    assert (d_xy > 0).all()
    torch.testing.assert_close(d_xy, d_yx, rtol=1e-5, atol=1e-7)


def test_lpips_video_chunks_equal_frame_by_frame_loop():
    model = load_st_lpips("alex")
    g = torch.Generator().manual_seed(3)
    x = torch.rand(2, 3, 5, 40, 40, generator=g) * 2 - 1
    y = (x + 0.2 * torch.randn(x.shape, generator=g)).clamp(-1, 1)
    with torch.no_grad():
        chunked = lpips_video(model, x, y, frames_per_chunk=3)
        loop = torch.stack(
            [torch.stack([model(x[b : b + 1, :, t], y[b : b + 1, :, t])[0] for t in range(5)]).mean() for b in range(2)]
        )
    torch.testing.assert_close(chunked, loop, rtol=1e-5, atol=1e-7)


def test_backbone_found_in_torch_hub_cache(tmp_path):
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path))
    try:
        (tmp_path / "checkpoints").mkdir()
        src = _save_torchvision_state("alex", tmp_path, "pth")
        src.rename(tmp_path / "checkpoints" / HUB_NAMES["alex"])
        from_cache = load_lpips("alex")
    finally:
        torch.hub.set_dir(old)
    explicit = load_lpips("alex", backbone_path=_save_torchvision_state("alex", tmp_path, "pth"))
    x, y = _images(4)
    with torch.no_grad():
        torch.testing.assert_close(from_cache(x, y), explicit(x, y), rtol=0, atol=0)


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_missing_backbone_says_how_to_provide_it(net, tmp_path):
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path))
    try:
        with pytest.raises(WeightsUnavailable) as err:
            load_lpips(net)
    finally:
        torch.hub.set_dir(old)
    message = str(err.value)
    assert "backbone_path" in message and HUB_NAMES[net] in message
    assert str(tmp_path / "checkpoints") in message
    with pytest.raises(WeightsUnavailable, match="does not exist"):
        load_lpips(net, backbone_path=tmp_path / "nope.pth")


def test_missing_lpips_wheel_says_how_to_install_it(monkeypatch, tmp_path):
    import lcvae.perceptual.weights as weights

    monkeypatch.setattr(weights.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(WeightsUnavailable, match="pip install --no-deps lpips"):
        load_lpips("alex", backbone_path=_save_torchvision_state("alex", tmp_path, "pth"))
    with pytest.raises(WeightsUnavailable, match="pip install --no-deps stlpips-pytorch"):
        load_st_lpips("vgg")


def test_wrong_backbone_file_is_rejected(tmp_path):
    vgg_file = _save_torchvision_state("vgg", tmp_path, "pth")
    with pytest.raises(ValueError, match="right file"):
        load_lpips("alex", backbone_path=vgg_file)
    with pytest.raises(ValueError, match="must be one of"):
        LPIPSConfig(net="squeeze")
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        LPIPS(LPIPSConfig())(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 9))
