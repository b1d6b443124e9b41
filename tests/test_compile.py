"""torch.compile of the model: one graph per call (no graph breaks), no opaque oneDNN call in it,
compiled output equal to eager.

The default tests trace with a recording backend that runs the captured graph as it is (seconds);
the inductor test compiles for real (C++ code generation, about a minute on 2 cores) and is slow.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable

import pytest
import torch

from lcvae.models.lcvae import LCVAE
from lcvae.models.presets import get_preset

pytestmark = pytest.mark.usefixtures("one_thread")


def _model() -> LCVAE:
    torch.manual_seed(0)
    return LCVAE(get_preset("lcvae-tiny")).eval()


def _calls(model: LCVAE) -> dict[str, tuple[Callable, torch.Tensor]]:
    """Encode, decode and chunked decode of a causal LC-VAE, on inputs whose frames take the oneDNN path in eager."""
    g = torch.Generator().manual_seed(1)
    video = torch.rand(1, 3, 33, 32, 32, generator=g) * 2 - 1
    latent = torch.randn(1, *model.diffusion_shape(33, 32, 32), generator=g)
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
def test_one_graph_with_plain_convolutions_equal_to_eager(name):
    torch._dynamo.reset()
    model = _model()
    fn, arg = _calls(model)[name]
    graphs, backend = _recording_backend()
    with torch.no_grad():
        want = fn(arg)
        got = torch.compile(fn, backend=backend, fullgraph=True)(arg)  # fullgraph: a graph break is an error
    assert len(graphs) == 1
    targets = [str(node.target) for node in graphs[0].graph.nodes if node.op == "call_function"]
    assert not [t for t in targets if "mkldnn" in t]  # the eager fast path stays out of compiled graphs
    assert any("conv3d" in t for t in targets)
    assert got.shape == want.shape and (got - want).abs().max() <= 1e-4


def _has_cpp_compiler() -> bool:
    return any(shutil.which(c) for c in (os.environ.get("CXX", "g++"), "g++", "c++", "clang++"))


@pytest.mark.slow
@pytest.mark.skipif(not _has_cpp_compiler(), reason="inductor on CPU generates C++ and needs a compiler (g++, c++ or clang++)")
def test_inductor_compiled_encode_and_decode_equal_eager():
    torch._dynamo.reset()
    model = _model()
    calls = _calls(model)
    with torch.no_grad():
        for name in ("encode", "decode"):
            fn, arg = calls[name]
            got = torch.compile(fn, fullgraph=True)(arg)
            assert (got - fn(arg)).abs().max() <= 1e-4, name
