"""``lcvae study``: the paper's equal-latent-size comparison (WF-VAE C', LC-VAE 2C' with the paper
mask, PTLC, optionally adaptive Top-50 %) as learning curves over seeds, with a verdict per claim.

:mod:`lcvae.study.config` (settings and the runs they build), :mod:`lcvae.study.runner` (segmented
training, cached held-out evaluations, results), :mod:`lcvae.study.claims` (the verdict rule),
:mod:`lcvae.study.report` (results.json, claims.json, model folders, videos, report.html).
"""

from lcvae.study.claims import study_claims, verdict
from lcvae.study.config import MODELS, RUNS, StudyConfig, load_study_config, run_config
from lcvae.study.runner import run_study

__all__ = ["MODELS", "RUNS", "StudyConfig", "load_study_config", "run_config", "run_study", "study_claims", "verdict"]
