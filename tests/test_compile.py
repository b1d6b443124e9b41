"""torch.compile of the model: one graph per call (no graph breaks), the oneDNN fast path kept as
the traceable ``lcvae::onednn_conv3d`` op, compiled output (and gradients) equal to eager.

The default tests trace with a recording backend that runs the captured graph as it is (seconds);
the inductor test compiles for real (C++ code generation, about a minute on 2 cores) and is slow.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable

import pytest
import torch

from lcvae.models.layers import conv3d, onednn_conv3d
from lcvae.models.lcvae import LCVAE
from lcvae.models.presets import get_preset

pytestmark = pytest.mark.usefixtures("one_thread")


def _model() -> LCVAE:
    torch.manual_seed(0)
    return LCVAE(get_preset("lcvae-tiny")).eval()


def _calls(model: LCVAE) -> dict[str, tuple[Callable, torch.Tensor]]:
    """Encode, decode and chunked decode of a causal LC-VAE, on inputs whose frames take the oneDNN path in eager."""
    g = torch.Generator().manual_seed(1)
    video = torch.rand(1, 3, 33, 64, 64, generator=g) * 2 - 1  # 3D layers see 16x16 and up
    latent = torch.randn(1, *model.diffusion_shape(33, 64, 64), generator=g)
    return {
        "encode": (model.diffusion_latent, video),
        "decode": (model.decode_latent, latent),
        "chunked decode": (lambda z: model.decode_latent(z, chunk=3), latent),
    }


def _recording_backend() -> tuple[list[torch.fx.GraphModule], Callable]:
    graphs: list[torch.fx.GraphModule] = []

    def backend(gm: torch.fx.GraphModule, example_inputs: list) -> Callable:
        graphs.append(gm)
        return gm.forward

    return graphs, backend


@pytest.mark.parametrize("name", ["encode", "decode", "chunked decode"])
def test_one_graph_with_the_onednn_op_equal_to_eager(name):
    torch._dynamo.reset()
    model = _model()
    fn, arg = _calls(model)[name]
    graphs, backend = _recording_backend()
    with torch.no_grad():
        want = fn(arg)
        got = torch.compile(fn, backend=backend, fullgraph=True)(arg)  # fullgraph: a graph break is an error
    assert len(graphs) == 1
    targets = [str(node.target) for node in graphs[0].graph.nodes if node.op == "call_function"]
    assert not [t for t in targets if "mkldnn_convolution" in t]  # the aten op has no fake-tensor rule
    assert any("lcvae.onednn_conv3d" in t for t in targets)  # large frames keep the oneDNN kernel
    assert got.shape == want.shape and (got - want).abs().max() <= 1e-4


@pytest.mark.parametrize("stride, bias", [(1, True), (2, False)])
def test_onednn_op_registration(stride, bias):
    """Schema, shape rule (fake tensors) and backward of the custom op, checked by torch itself."""
    torch.manual_seed(stride)
    x = torch.randn(2, 8, 5, 20, 16, requires_grad=True)
    w = torch.randn(16, 8, 3, 3, 3, requires_grad=True)
    b = torch.randn(16, requires_grad=True) if bias else None
    torch.library.opcheck(onednn_conv3d, (x, w, b, [0, 1, 1], [stride] * 3, [1, 1, 1], 1))


def test_compiled_fast_convolution_gradients_equal_plain_convolution():
    torch._dynamo.reset()
    torch.manual_seed(2)
    conv = torch.nn.Conv3d(8, 16, 3, padding=(0, 1, 1))
    x = torch.randn(2, 8, 4, 20, 16, requires_grad=True)
    fast = torch.compile(lambda v: conv3d(conv, v), backend="aot_eager", fullgraph=True)(x)
    plain = conv(x)
    assert (fast - plain).abs().max() <= 1e-4
    g_fast = torch.autograd.grad(fast.square().sum(), [x, conv.weight, conv.bias])
    g_plain = torch.autograd.grad(plain.square().sum(), [x, conv.weight, conv.bias])
    for a, b in zip(g_fast, g_plain):
        assert torch.allclose(a, b, atol=1e-3, rtol=1e-4)


def _has_cpp_compiler() -> bool:
    return any(shutil.which(c) for c in (os.environ.get("CXX", "g++"), "g++", "c++", "clang++"))


@pytest.mark.slow
@pytest.mark.skipif(
    not _has_cpp_compiler(), reason="inductor on CPU generates C++ and needs a compiler (g++, c++ or clang++)"
)
def test_inductor_compiled_encode_and_decode_equal_eager():
    torch._dynamo.reset()
    model = _model()
    calls = _calls(model)
    with torch.no_grad():
        for name in ("encode", "decode"):
            fn, arg = calls[name]
            got = torch.compile(fn, fullgraph=True)(arg)
            assert (got - fn(arg)).abs().max() <= 1e-4, name
