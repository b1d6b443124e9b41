import io
import json
import logging
import os
import random
import socket
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
import yaml
from torch import nn

from lcvae import utils
from lcvae.config import to_dict
from lcvae.train.checkpoint import (
    capture_rng_state,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from lcvae.train.distributed import (
    all_reduce_mean,
    any_rank,
    barrier,
    cleanup_distributed,
    gather_rng_states,
    get_rank,
    get_world_size,
    init_distributed,
    is_main,
    mean_over_ranks,
    min_over_ranks,
    seed_everything,
    setup_logging,
)
from lcvae.train.ema import EMA
from lcvae.utils import atomic_write, write_json

# ------------------------------------------------------------------------------------------- EMA


class Scalar(nn.Module):
    def __init__(self, value: float, dtype=torch.float64):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(value, dtype=dtype))


def test_ema_math_on_one_parameter():
    model = Scalar(1.0)
    ema = EMA(model, decay=0.9)
    expected = 1.0
    for target in (3.0, -1.0, 0.5):
        with torch.no_grad():
            model.w.fill_(target)
        ema.update(model)
        expected = 0.9 * expected + (1 - 0.9) * target
        assert ema.params["w"].item() == pytest.approx(expected, rel=1e-15, abs=1e-15)
    assert ema.num_updates == 3
    ema.copy_to(model)
    assert model.w.item() == pytest.approx(expected, rel=1e-15)


def test_ema_keeps_fp32_shadow_for_bf16_and_copies_buffers():
    model = Scalar(1.0, dtype=torch.bfloat16)
    ema = EMA(model, decay=0.999)
    assert ema.params["w"].dtype == torch.float32
    with torch.no_grad():
        model.w.fill_(2.0)
    ema.update(model)
    # 0.999 + 0.002 = 1.001: representable in fp32 (not in bf16, where it would round back to 1.0)
    assert ema.params["w"].item() == pytest.approx(1.001, rel=1e-6)

    bn = nn.BatchNorm1d(2)
    ema_bn = EMA(bn)
    bn.train()(torch.randn(8, 2) + 5.0)
    ema_bn.update(bn)
    assert torch.equal(ema_bn.buffers["running_mean"], bn.running_mean)
    assert ema_bn.buffers["num_batches_tracked"].item() == 1


def test_ema_state_round_trip_continues_identically():
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    ema = EMA(model, decay=0.99)
    for _ in range(3):
        with torch.no_grad():
            model.weight.add_(torch.randn_like(model.weight))
        ema.update(model)
    buf = io.BytesIO()
    torch.save(ema.state_dict(), buf)
    restored = EMA(nn.Linear(3, 2), decay=0.99)  # fresh shadow = different weights
    restored.load_state_dict(torch.load(io.BytesIO(buf.getvalue()), weights_only=True))
    assert restored.num_updates == 3
    for name in ema.params:
        assert torch.equal(restored.params[name], ema.params[name])
    ema.update(model)
    restored.update(model)
    for name in ema.params:
        assert torch.equal(restored.params[name], ema.params[name])
    with pytest.raises(ValueError, match="do not match the model"):
        EMA(nn.Linear(3, 2, bias=False)).load_state_dict(ema.state_dict())


# ------------------------------------------------------------------------------------ checkpoint


@dataclass(frozen=True)
class _Cfg:
    lr: float = 1e-5
    sizes: tuple[int, int] = (2, 3)
    name: str = "tiny"
    extra: dict = field(default_factory=dict)


def _trained_setup():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 2))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.999), weight_decay=1e-4)
    ema = EMA(model)
    for _ in range(2):
        opt.zero_grad()
        model(torch.randn(5, 4)).square().mean().backward()
        opt.step()
        ema.update(model)
    return model, opt, ema


def _state(opt, ema):
    return {
        "optim": opt.state_dict(),
        "ema": ema.state_dict(),
        "rng": capture_rng_state(),
        "data": {"epoch": 1, "index": 17},
    }


def _assert_same(a, b):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    elif isinstance(a, dict):
        assert set(a) == set(b)
        for k in a:
            _assert_same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_same(x, y)
    else:
        assert a == b


def test_checkpoint_round_trip_is_bit_exact_including_rng(tmp_path):
    model, opt, ema = _trained_setup()
    np.random.seed(3)
    random.seed(4)
    state = _state(opt, ema)
    after_capture = (torch.rand(4), np.random.rand(3), [random.random() for _ in range(3)], random.gauss(0, 1))
    path = save_checkpoint(tmp_path, 20, weights={"model": model.state_dict()}, state=state, config=_Cfg())

    loaded = load_checkpoint(path)
    assert loaded.step == 20 and loaded.path == path
    _assert_same(loaded.weights["model"], {k: v for k, v in model.state_dict().items()})
    _assert_same(loaded.state["optim"], opt.state_dict())
    _assert_same(loaded.state["ema"], ema.state_dict())
    assert loaded.state["data"] == {"epoch": 1, "index": 17}
    assert loaded.config == to_dict(_Cfg()) == yaml.safe_load((path / "config.yaml").read_text())

    # restore into fresh objects, then continue: identical results
    model2 = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 2))
    model2.load_state_dict(loaded.weights["model"])
    opt2 = torch.optim.AdamW(model2.parameters(), lr=1e-3)
    opt2.load_state_dict(loaded.state["optim"])
    _assert_same(opt2.state_dict(), opt.state_dict())

    torch.rand(10), np.random.rand(10), random.random()  # move every RNG on
    restore_rng_state(loaded.state["rng"])
    again = (torch.rand(4), np.random.rand(3), [random.random() for _ in range(3)], random.gauss(0, 1))
    assert torch.equal(again[0], after_capture[0])
    assert np.array_equal(again[1], after_capture[1])
    assert again[2] == after_capture[2] and again[3] == after_capture[3]


def test_state_that_weights_only_cannot_load_is_refused_before_writing(tmp_path):
    with pytest.raises(ValueError, match=r"state\['bad'\] is a ndarray"):
        save_checkpoint(tmp_path, 1, weights={}, state={"bad": np.zeros(3)})
    assert list(tmp_path.iterdir()) == []


def test_keep_last_k_and_latest(tmp_path):
    assert latest_checkpoint(tmp_path) is None
    for step in (1, 2, 3, 10, 5):
        save_checkpoint(tmp_path, step, weights={"m": {"w": torch.full((2,), float(step))}}, state={}, keep_last=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_000000005", "step_000000010"]
    assert latest_checkpoint(tmp_path).name == "step_000000010"
    assert load_checkpoint(latest_checkpoint(tmp_path)).weights["m"]["w"].tolist() == [10.0, 10.0]


def test_tied_weights_are_saved(tmp_path):
    shared = torch.arange(4.0)
    path = save_checkpoint(tmp_path, 0, weights={"m": {"a": shared, "b": shared, "c": shared[1:3]}}, state={})
    w = load_checkpoint(path).weights["m"]
    assert w["a"].tolist() == w["b"].tolist() == [0, 1, 2, 3] and w["c"].tolist() == [1, 2]


def test_killed_save_leaves_previous_checkpoint_loadable(tmp_path):
    save_checkpoint(tmp_path, 1, weights={"model": {"w": torch.ones(64)}}, state={"x": 1})

    def dies_halfway(path, produce):
        produce(path)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        raise OSError("simulated crash mid-write")

    with pytest.raises(OSError, match="simulated crash"):
        save_checkpoint(tmp_path, 2, weights={"model": {"w": torch.zeros(64)}}, state={"x": 2}, _writer=dies_halfway)
    assert latest_checkpoint(tmp_path).name == "step_000000001"
    assert [p.name for p in tmp_path.iterdir()] == ["step_000000001"]  # temp folder cleaned up
    loaded = load_checkpoint(latest_checkpoint(tmp_path))
    assert loaded.state["x"] == 1 and torch.equal(loaded.weights["model"]["w"], torch.ones(64))

    # a process killed outright (no cleanup) leaves a partial temp folder: ignored, then removed
    leftover = tmp_path / ".tmp-step_000000003.deadbeef"
    leftover.mkdir()
    (leftover / "state.pt").write_bytes(b"\x80\x02partial")
    assert latest_checkpoint(tmp_path).name == "step_000000001"
    save_checkpoint(tmp_path, 4, weights={}, state={"x": 4})
    assert not leftover.exists()
    assert load_checkpoint(latest_checkpoint(tmp_path)).state == {"x": 4, "step": 4}


def test_resaving_a_step_replaces_it(tmp_path):
    save_checkpoint(tmp_path, 7, weights={"m": {"w": torch.zeros(1)}, "old": {"w": torch.zeros(1)}}, state={})
    save_checkpoint(tmp_path, 7, weights={"m": {"w": torch.ones(1)}}, state={})
    loaded = load_checkpoint(tmp_path / "step_000000007")
    assert set(loaded.weights) == {"m"} and loaded.weights["m"]["w"].item() == 1.0
    assert [p.name for p in tmp_path.iterdir()] == ["step_000000007"]


def test_atomic_write_failure_keeps_old_file(tmp_path):
    target = tmp_path / "metrics.json"
    write_json(target, {"psnr": 30})

    def broken(tmp):
        with open(tmp, "wb") as f:
            f.write(b'{"ps')
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, broken)
    assert json.loads(target.read_text()) == {"psnr": 30}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_atomic_write_syncs_the_file_before_the_rename_and_the_folder_after(tmp_path, monkeypatch):
    target, events = tmp_path / "out" / "a.txt", []
    monkeypatch.setattr(utils, "fsync_file", lambda p: events.append(("file", open(p).read(), target.exists())))
    monkeypatch.setattr(utils, "fsync_dir", lambda p: events.append(("dir", str(p), target.exists())))
    atomic_write(target, lambda tmp: open(tmp, "w").write("x"))
    assert events == [("file", "x", False), ("dir", str(target.parent), True)]
    assert target.stat().st_mode & 0o777 == 0o644


# ----------------------------------------------------------------------------------- distributed


def test_single_process_helpers(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    info = init_distributed()
    assert (info.rank, info.world_size, info.is_main) == (0, 1, True)
    assert get_rank() == 0 and get_world_size() == 1 and is_main()
    barrier()
    assert all_reduce_mean({"b": 3, "a": torch.tensor(2.5)}) == {"a": 2.5, "b": 3.0}
    assert any_rank(True) and not any_rank(False) and min_over_ranks(4) == 4
    t = torch.tensor([1.5, -2.0])
    assert torch.equal(mean_over_ranks(t), t) and mean_over_ranks(t) is not t
    torch.manual_seed(3)
    (state,) = gather_rng_states()
    assert torch.equal(state["torch"], torch.get_rng_state())
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    with pytest.raises(ValueError, match="launch with torchrun"):
        init_distributed()


def test_seed_everything_offsets_by_rank():
    assert seed_everything(5, rank=2) == 7
    got = (torch.rand(3), np.random.rand(2), random.random())
    torch.manual_seed(7)
    np.random.seed(7)
    random.seed(7)
    assert torch.equal(got[0], torch.rand(3))
    assert np.array_equal(got[1], np.random.rand(2))
    assert got[2] == random.random()


def test_setup_logging_is_quiet_off_rank_zero():
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        setup_logging(logging.INFO, rank=1)
        assert root.level == logging.WARNING and len(root.handlers) == 1
        setup_logging(logging.INFO, rank=0)
        assert root.level == logging.INFO
    finally:
        for h in list(root.handlers):
            root.removeHandler(h)
        for h in saved[0]:
            root.addHandler(h)
        root.setLevel(saved[1])


def _gloo_worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world_size))
    torch.set_num_threads(1)
    info = init_distributed(backend="gloo")
    result = {
        "rank": info.rank,
        "world": get_world_size(),
        "mean": all_reduce_mean({"loss": rank + 1.0, "acc": 10.0 * rank}),
    }
    try:
        all_reduce_mean({f"key{rank}": 1.0})
        result["mismatch"] = "not detected"
    except ValueError as err:
        result["mismatch"] = str(err)
    result["any"] = [any_rank(rank == 1), any_rank(False)]
    result["min"] = min_over_ranks(3 + 4 * rank)
    result["tensor_mean"] = mean_over_ranks(torch.tensor([2.0 * rank, 6.0])).tolist()
    torch.manual_seed(100 + rank)
    states = gather_rng_states()
    result["rng"] = [
        len(states),
        torch.equal(states[rank]["torch"], torch.get_rng_state()),
        torch.equal(states[0]["torch"], states[1]["torch"]),
    ]
    barrier()
    cleanup_distributed()
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump(result, f)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_gloo_all_reduce_mean(tmp_path):
    mp.spawn(_gloo_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    for rank in range(2):
        res = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert res["rank"] == rank and res["world"] == 2
        assert res["mean"] == {"loss": 1.5, "acc": 5.0}
        assert "ranks passed different keys" in res["mismatch"]
        assert res["any"] == [True, False] and res["min"] == 3 and res["tensor_mean"] == [1.0, 6.0]
        assert res["rng"] == [2, True, False]  # every rank's own RNG state, in rank order


def test_lr_schedule_warms_up_then_decays_linearly_to_zero_on_absolute_steps():
    from lcvae.train.vae_config import OptimSection, lr_scale

    o = OptimSection(warmup_steps=10, decay_start=100, decay_steps=50)
    assert [lr_scale(o, s) for s in (0, 4, 9, 99, 100)] == pytest.approx([0.1, 0.5, 1.0, 1.0, 1.0])
    assert [lr_scale(o, s) for s in (125, 149, 150, 400)] == pytest.approx([0.5, 0.02, 0.0, 0.0])
    assert lr_scale(OptimSection(), 10**6) == 1.0  # no warm-up, no decay
    assert lr_scale(OptimSection(decay_steps=4), 2) == pytest.approx(0.5)
