"""Trainer faults: NaN steps and divergence in train-latte, divergence-save then resume in train-vae,
SIGTERM -> checkpoint -> exact resume (both trainers, one real signal), a stalled DDP rank, the run
folder on a bad restart and on resume, causality and the mask when starting from a WF-VAE."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from lcvae.diffusion import GaussianDiffusion
from lcvae.losses import GeneratorLoss
from lcvae.models.lcvae import LCVAE
from lcvae.train import train_latte, train_vae
from lcvae.train.checkpoint import latest_checkpoint, load_checkpoint
from lcvae.train.faults import EXIT_INTERRUPTED, TrainingDiverged, TrainingInterrupted
from lcvae.train.vae_config import ModelSection, resolve_model_config
from lcvae.train.vae_model import init_backbone_from
from test_train_latte import _config as latte_config
from test_train_latte import _tensors, make_vae_and_cache
from test_train_vae import RESUME, SMALL, _official_folder, clips, rows, tiny  # noqa: F401 (clips: fixture)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    return make_vae_and_cache(tmp_path_factory.mktemp("latte_assets"))


def _on_call(cls, calls: set[int], action):
    """A subclass of a loss whose ``action(output)`` runs on the given 1-based calls."""
    def __call__(self, *args, **kwargs):
        out = base(self, *args, **kwargs)
        type(self).count += 1
        if type(self).count in calls:
            out = action(out)
        return out

    base = cls.__call__ if cls is GeneratorLoss else cls.training_losses
    name = "__call__" if cls is GeneratorLoss else "training_losses"
    return type("Hooked", (cls,), {"count": 0, name: __call__})


def _sigterm(out):
    os.kill(os.getpid(), signal.SIGTERM)  # delivered to our handler at once; the step still completes
    return out


def _nan_latte(out):
    out.loss = out.loss * float("nan")
    return out


def _equal_tensors(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


# ---------------------------------------------------------------------------------------- train-latte


def test_latte_skips_and_counts_nan_steps(assets, tmp_path, monkeypatch, caplog):
    caplog.set_level("INFO", logger="lcvae.train.train_latte")
    monkeypatch.setattr(train_latte, "GaussianDiffusion", _on_call(GaussianDiffusion, {2}, _nan_latte))
    last = train_latte.main(latte_config(tmp_path, assets, "max_steps=3"))
    assert last.name == "step_000000003"
    warnings = [r.message for r in caplog.records if r.message.startswith("non-finite")]
    assert warnings == ["non-finite loss or gradient at step 1: batch skipped (1 in a row, 1 in all)"]
    assert any("3 steps" in r.message and "1 non-finite steps skipped" in r.message for r in caplog.records)
    assert all(torch.isfinite(t).all() for t in _tensors(last).values())


def test_latte_divergence_saves_the_state_before_the_blow_up_and_resumes_finite(assets, tmp_path):
    train_latte.main(latte_config(tmp_path, assets, "max_steps=2"))
    good = _tensors(tmp_path / "checkpoints/step_000000002")
    # lr 1e20: the update of step 3 is finite, but its weights give only NaN/inf losses afterwards;
    # ckpt_every=1 also writes that update's result as step 3
    with pytest.raises(TrainingDiverged, match=r"2 non-finite steps in a row \(step 3\); the state from before the "
                                               r"last update is saved in .*step_000000002") as err:
        train_latte.main(latte_config(tmp_path, assets, "max_steps=8", "optim.lr=1e20", "max_nonfinite=2", "ckpt_every=1"))
    assert err.value.checkpoint.name == "step_000000002"
    _equal_tensors(_tensors(err.value.checkpoint), good)
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["diverged-step_000000003", "step_000000002"]
    blown = _tensors(tmp_path / "checkpoints/diverged-step_000000003")
    assert max(float(t.abs().max()) for k, t in blown.items() if k.startswith("model/")) > 1e15  # what was set aside
    # resuming with a sane lr (the config's, not the checkpoint's) trains on finite losses at once
    last = train_latte.main(latte_config(tmp_path, assets, "max_steps=4", "max_nonfinite=1"))
    assert last.name == "step_000000004" and all(torch.isfinite(t).all() for t in _tensors(last).values())


def test_latte_sigterm_checkpoints_and_resumes_bit_identical(assets, tmp_path, monkeypatch):
    whole = train_latte.main(latte_config(tmp_path / "a", assets, "max_steps=4", "ckpt_every=100"))
    monkeypatch.setattr(train_latte, "GaussianDiffusion", _on_call(GaussianDiffusion, {2}, _sigterm))
    with pytest.raises(TrainingInterrupted, match="stopped by SIGTERM after step 2") as err:
        train_latte.main(latte_config(tmp_path / "b", assets, "max_steps=4", "ckpt_every=100"))
    assert err.value.checkpoint.name == "step_000000002" and err.value.step == 2
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is gone after the run
    monkeypatch.setattr(train_latte, "GaussianDiffusion", GaussianDiffusion)
    resumed = train_latte.main(latte_config(tmp_path / "b", assets, "max_steps=4", "ckpt_every=100"))
    _equal_tensors(_tensors(resumed), _tensors(whole))


def test_latte_real_sigterm_exits_75_with_a_checkpoint_and_resumes_exactly(assets, tmp_path):
    vae, cache = assets
    args = [sys.executable, "-m", "lcvae", "train-latte", f"run_dir={tmp_path / 'b'}", f"cache={cache}", f"vae={vae}",
            "model.preset=tiny", "model.class_dropout_prob=0.5", "batch_size=2", "log_every=1", "ckpt_every=1000",
            "keep_last=null", "sample.every=0", "num_workers=0", "tensorboard=false", "optim.lr=1e-3", "max_steps=1000"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(args, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if " step 1/1000 " in line:
            proc.send_signal(signal.SIGTERM)
            break
    rest = proc.communicate(timeout=60)[1]
    assert proc.returncode == EXIT_INTERRUPTED, "".join(lines) + rest
    assert "SIGTERM received: finishing this step" in rest and "interrupted: stopped by SIGTERM after step" in rest
    ckpt = latest_checkpoint(tmp_path / "b/checkpoints")
    n = ckpt and load_checkpoint(ckpt).step
    assert n >= 1 and f"after step {n};" in rest
    whole = train_latte.main(latte_config(tmp_path / "a", assets, f"max_steps={n + 1}", "ckpt_every=1000"))
    resumed = train_latte.main(latte_config(tmp_path / "b", assets, f"max_steps={n + 1}", "ckpt_every=1000"))
    _equal_tensors(_tensors(resumed), _tensors(whole))
