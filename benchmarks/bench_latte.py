"""Latte training-step cost: gradient checkpointing against the plain path, in the same run.

Prints JSON. For a Latte preset at a reduced latent (default S on (8, 8, 16, 16), batch 2): the
bytes autograd holds from the forward pass until backward (counted with saved_tensors_hooks, so
exact and device independent; with checkpointing, backward re-saves one block at a time on top,
which is not counted), and the median time of one forward + backward, each with and without
gradient checkpointing, plus the ratios checkpointed / plain.

    .venv/bin/python benchmarks/bench_latte.py [--preset S] [--batch 2] [--threads 2]
"""

from __future__ import annotations

import argparse
import json

import torch
from torch.utils import benchmark

from lcvae.diffusion import GaussianDiffusion
from lcvae.models.latte import Latte, LatteConfig


def saved_bytes(step) -> int:
    """Bytes of the tensors autograd keeps for backward during one call of step (each storage once)."""
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = step()
    loss.backward()
    return sum(seen.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="S")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--channels", type=int, default=8)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    shape = (args.batch, args.channels, args.frames, args.size, args.size)
    x0 = torch.randn(shape)
    t = torch.randint(0, 1000, (args.batch,))
    y = torch.randint(0, 101, (args.batch,))
    diffusion = GaussianDiffusion()
    result: dict = {"preset": args.preset, "latent": list(shape), "threads": args.threads}
    models = {}
    for ckpt in (False, True):
        cfg = LatteConfig.from_preset(
            args.preset,
            in_channels=args.channels,
            num_frames=args.frames,
            input_size=args.size,
            num_classes=101,
            gradient_checkpointing=ckpt,
        )
        models[ckpt] = Latte(cfg).train()
    models[True].load_state_dict(models[False].state_dict())

    for ckpt, model in models.items():

        def step(model=model):
            return diffusion.training_losses(lambda x, tt: model(x, tt, y), x0, t).loss.mean()

        def step_backward(model=model, step=step):
            model.zero_grad(set_to_none=True)
            step().backward()

        name = "checkpointed" if ckpt else "plain"
        result[f"{name}_saved_mb"] = saved_bytes(step) / 2**20
        timer = benchmark.Timer(stmt="fn()", globals={"fn": step_backward})
        result[f"{name}_step_ms"] = timer.blocked_autorange(min_run_time=3.0).median * 1e3
    result["saved_ratio"] = result["checkpointed_saved_mb"] / result["plain_saved_mb"]
    result["time_ratio"] = result["checkpointed_step_ms"] / result["plain_step_ms"]
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
