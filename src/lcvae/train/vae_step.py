"""One step of the VAE recipe: a generator (G) and/or a discriminator (D) update, or none at all.

    G: x_hat = decoder(compress(z)), z ~ posterior(x); L1 + perceptual + KL + lambda * GAN
    D: hinge loss on x and x_hat (detached)

A non-finite loss or gradient norm on any rank skips the step on every rank: no optimiser steps,
and the discriminator's BatchNorm statistics go back to what they were before the step's forward
passes. Otherwise ``previous`` keeps the parts the step changes (for a divergence to roll back) and
the optimisers and the EMA step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path

import torch
from torch import Tensor, nn

from lcvae.train.distributed import any_rank
from lcvae.train.faults import PreviousState
from lcvae.train.run_log import append_jsonl
from lcvae.train.vae_setup import Forwards, VAEParts


def _backward_clipped(
    loss: Tensor, optimizer: torch.optim.Optimizer, parameters: Iterable[nn.Parameter], clip: float | None
) -> Tensor | None:
    """Zero the gradients, backpropagate ``loss`` and clip them to norm ``clip`` (None: only measure);
    returns the norm before clipping, or None when the loss is non-finite on some rank (every rank
    then skips the step together)."""
    if any_rank(not bool(torch.isfinite(loss))):
        return None
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    return torch.nn.utils.clip_grad_norm_(parameters, clip or math.inf)


def train_step(
    parts: VAEParts,
    fw: Forwards,
    previous: PreviousState,
    x: Tensor,
    noise: Tensor | None,
    step: int,
    *,
    g_step: bool,
    d_step: bool,
    gan_on: bool,
    clip: float | None,
    autocast: Callable[[], AbstractContextManager],
    paper_indices: Sequence[int],
    selection_log: Path | None,
) -> tuple[bool, dict[str, float]]:
    """Run the step on x (B, 3, T, H, W) in [-1, 1]; returns (applied, logged values).

    ``applied`` False: the step was non-finite on some rank and nothing changed. ``selection_log``: the
    file that gets this step's adaptive top-K selection, or None.
    """
    model, disc, opt_g, opt_d = parts.model, parts.disc, parts.opt_g, parts.opt_d
    logs: dict[str, float] = {}
    bad, x_hat = False, None
    # BatchNorm statistics before this step's forward passes: restored if the step is skipped
    disc_buffers = {name: b.clone() for name, b in disc.named_buffers()}

    if g_step:  # generator: reconstruction + KL + adaptive-weighted GAN term
        disc.requires_grad_(False)
        with autocast():
            x_hat, mean, logvar, enc_flow, dec_flow = fw.fwd(x, noise)
            flows = enc_flow[0] is not None and dec_flow[0] is not None
            g = parts.gen_loss(
                x,
                x_hat,
                mean,
                logvar,
                step=step,
                discriminator=fw.disc_g if gan_on else None,
                last_layer=model.last_layer if gan_on else None,
                encoder_coeffs=enc_flow if flows else None,
                decoder_coeffs=dec_flow if flows else None,
                grad_reduce=fw.grad_reduce,
            )
        disc.requires_grad_(True)
        norm = _backward_clipped(g.total, opt_g, model.parameters(), clip)
        bad = norm is None
        if not bad:
            bad = not bool(torch.isfinite(norm))
            logs.update(g.to_log(), mae=float((x_hat.detach().float() - x.float()).abs().mean()), grad_norm=float(norm))
            if model.compressor is not None and model.compressor.last_selection is not None:
                # adaptive top-K: which coefficient channels this batch kept, and how many the paper mask keeps too
                overlap = model.compressor.overlap_with(paper_indices)
                logs["adaptive_overlap"] = overlap
                if selection_log is not None:
                    append_jsonl(
                        selection_log,
                        {
                            "step": step,
                            "overlap_paper": overlap,
                            "selection": model.compressor.last_selection.tolist(),
                        },
                    )

    if d_step and not bad:  # discriminator: hinge loss on real clips and reconstructions
        if x_hat is None:
            with torch.no_grad(), autocast():
                x_hat = fw.train_fwd(x, noise)[0]
        with autocast():
            d = parts.disc_loss(fw.disc_d, x, x_hat.detach(), step=step)
        norm_d = _backward_clipped(d.total, opt_d, disc.parameters(), clip)
        bad = norm_d is None
        if not bad:
            bad = not bool(torch.isfinite(norm_d))
            logs.update({f"d_{k}": v for k, v in d.to_log().items()}, d_grad_norm=float(norm_d))

    if bad:  # nothing is stepped: weights and statistics stay those of the last good step
        opt_g.zero_grad(set_to_none=True)
        opt_d.zero_grad(set_to_none=True)
        with torch.no_grad():
            for name, buffer in disc.named_buffers():
                buffer.copy_(disc_buffers[name])
        return False, logs
    # the parts this step changes; the discriminator's BatchNorm statistics change in a G step too,
    # already in its forward passes: the copy holds them as they were before
    previous.keep(*(("model", "opt_g", "ema") if g_step else ()), "disc", *(("opt_d",) if d_step else ()))
    previous.amend("disc", disc_buffers)
    if g_step:
        opt_g.step()
        parts.ema.update(model)
    if d_step:
        opt_d.step()
    return True, logs
