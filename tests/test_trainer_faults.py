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
from lcvae.train import train_latte, train_vae, vae_setup
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
    with pytest.raises(
        TrainingDiverged,
        match=r"2 non-finite steps in a row \(step 3\); the state from before the "
        r"last update is saved in .*step_000000002",
    ) as err:
        train_latte.main(
            latte_config(tmp_path, assets, "max_steps=8", "optim.lr=1e20", "max_nonfinite=2", "ckpt_every=1")
        )
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
    args = [
        sys.executable,
        "-m",
        "lcvae",
        "train-latte",
        f"run_dir={tmp_path / 'b'}",
        f"cache={cache}",
        f"vae={vae}",
        "model.preset=tiny",
        "model.class_dropout_prob=0.5",
        "batch_size=2",
        "log_every=1",
        "ckpt_every=1000",
        "keep_last=null",
        "sample.every=0",
        "num_workers=0",
        "tensorboard=false",
        "optim.lr=1e-3",
        "max_steps=1000",
    ]
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
    assert "SIGTERM received: finishing this step" in rest and "stopped by SIGTERM after step" in rest
    ckpt = latest_checkpoint(tmp_path / "b/checkpoints")
    n = ckpt and load_checkpoint(ckpt).step
    assert n >= 1 and f"after step {n};" in rest
    whole = train_latte.main(latte_config(tmp_path / "a", assets, f"max_steps={n + 1}", "ckpt_every=1000"))
    resumed = train_latte.main(latte_config(tmp_path / "b", assets, f"max_steps={n + 1}", "ckpt_every=1000"))
    _equal_tensors(_tensors(resumed), _tensors(whole))


# ------------------------------------------------------------------------------------------ train-vae

FAST = ("loss.perceptual_weight=0",)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    ckpt = load_checkpoint(path)
    out = {f"{g}/{k}": v for g, group in ckpt.weights.items() for k, v in group.items()}
    for opt in ("opt_g", "opt_d"):
        out.update({f"{opt}/{i}/{k}": v for i, s in ckpt.state[opt]["state"].items() for k, v in s.items()})
    return out


def test_vae_divergence_save_then_resume_does_not_diverge(tmp_path, clips):
    run = tmp_path / "run"
    train_vae.main(tiny(run, clips, *FAST, "train.max_steps=2", "train.ckpt_every=1"))
    good = _weights(run / "checkpoints/step_000000002")
    # lr 1e20 from step 2 on: the update of step 3 is finite, the weights it leaves give only non-finite losses
    with pytest.raises(
        TrainingDiverged,
        match=r"2 non-finite steps in a row \(step 3\); the state from before the "
        r"last update is saved in .*step_000000002",
    ) as err:
        train_vae.main(
            tiny(run, clips, *FAST, "train.max_steps=6", "train.ckpt_every=1", "optim.lr=1e20", "train.max_nonfinite=2")
        )
    _equal_tensors(_weights(err.value.checkpoint), good)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "diverged-step_000000003",
        "step_000000001",
        "step_000000002",
    ]
    # before: the saved state was the blown-up one and this resume failed at its first step
    result = train_vae.main(tiny(run, clips, *FAST, "train.max_steps=4", "train.ckpt_every=1", "train.max_nonfinite=1"))
    assert result.step == 4 and result.nonfinite_total == 2  # the two of the diverged run, none since
    assert [r["step"] for r in rows(run) if "event" not in r] == [1, 2, 3, 4]


def test_vae_sigterm_checkpoints_and_resumes_bit_identical(tmp_path, clips, monkeypatch):
    random = (RESUME[0], "disc.dropout=0.3", *FAST, "train.max_steps=3", "train.ckpt_every=100")  # dropout: RNG matters
    whole = train_vae.main(tiny(tmp_path / "a", clips, *random))
    monkeypatch.setattr(vae_setup, "GeneratorLoss", _on_call(GeneratorLoss, {1}, _sigterm))  # during the first step
    with pytest.raises(TrainingInterrupted, match="stopped by SIGTERM after step 1") as err:
        train_vae.main(tiny(tmp_path / "b", clips, *random))
    assert err.value.checkpoint.name == "step_000000001"
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is gone after the run
    monkeypatch.setattr(vae_setup, "GeneratorLoss", GeneratorLoss)
    resumed = train_vae.main(tiny(tmp_path / "b", clips, *random))
    _equal_tensors(_weights(resumed.checkpoint), _weights(whole.checkpoint))
    untimed = [[{k: v for k, v in r.items() if k != "time"} for r in rows(tmp_path / x)] for x in "ab"]
    assert untimed[0] == untimed[1] and [r["step"] for r in untimed[1]] == [1, 2, 3]


def test_vae_resume_drops_the_redone_steps_from_metrics_and_tensorboard(tmp_path, clips):
    run = tmp_path / "run"
    train_vae.main(tiny(run, clips, *FAST, "train.max_steps=3", "log.tensorboard=true"))  # checkpoints 2 and 3
    import shutil

    shutil.rmtree(run / "checkpoints/step_000000003")  # killed after logging step 3, before its checkpoint
    train_vae.main(tiny(run, clips, *FAST, "train.max_steps=4", "log.tensorboard=true"))
    assert [r["step"] for r in rows(run)] == [1, 2, 3, 4]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run / "tensorboard"))
    acc.Reload()
    events = acc.Scalars("train/total")  # G steps only (alternate schedule): 1 and 3, step 3 once, the resumed value
    assert [e.step for e in events] == [r["step"] for r in rows(run) if "total" in r] == [1, 3]
    assert [e.value for e in events] == pytest.approx([r["total"] for r in rows(run) if "total" in r], rel=1e-6)
    train_vae.main(tiny(run, clips, *FAST, "train.max_steps=1", "train.resume=never"))  # started over in the folder
    assert [r["step"] for r in rows(run)] == [1]


def test_a_bad_restart_leaves_the_run_config_alone(tmp_path, clips):
    run = tmp_path / "run"
    train_vae.main(tiny(run, clips, *FAST, "train.max_steps=1"))
    before = (run / "config.json").read_text()
    with pytest.raises((ValueError, OSError)):
        train_vae.main(tiny(run, tmp_path / "no-such-folder", *FAST, "train.max_steps=5"))
    assert (run / "config.json").read_text() == before and json.loads(before)["train"]["max_steps"] == 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _two_ranks(tmp_path: Path, clips: Path, *extra: str) -> list[subprocess.Popen]:
    """``lcvae train-vae`` as ranks 0 and 1 of a gloo group (env:// like torchrun; we hold the pids)."""
    port = _free_port()
    args = [
        sys.executable,
        "-m",
        "lcvae",
        "train-vae",
        "model.preset=lcvae-tiny",
        f"model.backbone={SMALL}",
        "data.kind=folder",
        f"data.root={clips}",
        "data.num_frames=33",
        "data.short_side=32",
        "data.crop=32",
        "data.num_workers=0",
        "disc.preset=tiny",
        "loss.perceptual_weight=0",
        f"train.out_dir={tmp_path / 'run'}",
        "train.batch_size=1",
        "train.max_steps=1000",
        "train.ckpt_every=1000",
        "log.every=1",
        "log.tensorboard=false",
        *extra,
    ]
    procs = []
    for rank in (0, 1):
        env = {
            **os.environ,
            "OMP_NUM_THREADS": "1",
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": "2",
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
        }
        procs.append(
            subprocess.Popen(args, env=env, cwd=REPO, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        )
    for line in procs[0].stderr:  # rank 0 logs progress
        if " step 1/1000 " in line:
            break
    return procs


def test_a_stalled_rank_fails_the_job_within_the_timeout_naming_it(tmp_path, clips):
    procs = _two_ranks(tmp_path, clips, "train.dist_timeout_s=3")
    try:
        procs[1].send_signal(signal.SIGSTOP)
        stopped = time.monotonic()
        err = procs[0].communicate(timeout=40)[1]
        took = time.monotonic() - stopped
    finally:
        for p in procs:
            p.kill()
            p.wait()
    assert procs[0].returncode == 2, err[-3000:]
    assert "no answer from rank 1" in err and "train.dist_timeout_s=3 s" in err, err[-3000:]
    assert took < 3 + 3 + 10  # the timeout, the wait for other ranks' reports, slack for a loaded machine


def test_sigterm_to_one_rank_stops_both_after_the_same_step(tmp_path, clips):
    procs = _two_ranks(tmp_path, clips)
    try:
        procs[1].send_signal(signal.SIGTERM)  # only rank 1 is told; rank 0 learns it from the reduced flag
        errs = [p.communicate(timeout=60)[1] for p in procs]
    finally:
        for p in procs:
            p.kill()
            p.wait()
    assert [p.returncode for p in procs] == [EXIT_INTERRUPTED] * 2, errs[0][-2000:] + errs[1][-2000:]
    ckpt = latest_checkpoint(tmp_path / "run/checkpoints")
    step = load_checkpoint(ckpt).step
    assert len(load_checkpoint(ckpt).state["rng"]) == 2  # both ranks' RNG states: an exact resume with 2 ranks
    assert f"stopped by a stop signal on another rank after step {step};" in errs[0]
    assert f"stopped by SIGTERM after step {step};" in errs[1]


# ----------------------------------------------------------------------------- starting from a WF-VAE


def _small(**kw) -> ModelSection:
    return ModelSection(
        backbone={"base_channels": 8, "encoder_energy_flow": 8, "decoder_energy_flow": 8, **kw.pop("backbone", {})},
        **kw,
    )


def test_init_from_a_wfvae_of_other_causality_is_refused_unless_allowed(tmp_path, caplog):
    torch.manual_seed(0)
    folder = _official_folder(tmp_path, LCVAE(resolve_model_config(_small(preset="wfvae-tiny"))))  # causal
    non_causal = LCVAE(resolve_model_config(_small(preset="lcvae-tiny", backbone={"causal": False})))
    with pytest.raises(ValueError, match="is a causal backbone but the model being trained is non-causal"):
        init_backbone_from(non_causal, folder)
    init_backbone_from(non_causal, folder, allow_causality_change=True)
    assert any("init_allow_causality_change=true" in r.message for r in caplog.records)


def test_init_from_a_wfvae_reproduces_it_exactly_only_without_the_mask(tmp_path):
    torch.manual_seed(0)
    src = LCVAE(resolve_model_config(_small(preset="wfvae-tiny"))).eval()
    folder = _official_folder(tmp_path, src)
    plain = LCVAE(resolve_model_config(_small(preset="wfvae-tiny", compression="none"))).eval()
    masked = LCVAE(resolve_model_config(_small(preset="wfvae-tiny", compression="fixed", mask="paper"))).eval()
    for model in (plain, masked):
        init_backbone_from(model, folder)
    x = torch.rand(1, 3, 33, 32, 32) * 2 - 1
    with torch.no_grad():
        ref, a, b = src.reconstruct(x), plain.reconstruct(x), masked.reconstruct(x)
    assert torch.equal(a, ref)  # no mask: the WF-VAE's function, bit for bit
    gap = float((b - ref).abs().mean() / ref.abs().mean())
    assert gap > 0.01, gap  # the mask projects the copied channels too: a different starting function


def test_truncate_jsonl_keeps_what_the_first_steps_wrote(tmp_path):
    from lcvae.train.run_log import truncate_jsonl

    path = tmp_path / "metrics.jsonl"
    written = [
        {"step": 1, "total": 1.0},
        {"step": 2, "event": "nonfinite"},
        {"step": 2, "val": {"psnr": 30.0}},
        {"step": 2, "selection": [0]},
        {"step": 3, "total": 0.5},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in written) + '{"step": 4, "tot')  # cut off by a crash
    assert truncate_jsonl(path, 2) == 4  # during step 3: the event and the selection; after step 3; the torn line
    assert [json.loads(x) for x in path.read_text().splitlines()] == [written[0], written[2]]
    assert truncate_jsonl(path, 2) == 0 and truncate_jsonl(tmp_path / "absent.jsonl", 0) == 0
