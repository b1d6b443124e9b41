"""train-latte: exact resume (N steps == N/2 + restart + N/2, bit for bit), the data order, the cache-VAE
check, what a checkpoint records, strict configs and the shipped YAML files."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from lcvae.config import load_config
from lcvae.latent_cache import CacheRequest, cache_latents
from lcvae.models.io import save_pretrained
from lcvae.models.lcvae import LCVAE
from lcvae.models.presets import get_preset
from lcvae.train.checkpoint import load_checkpoint
from lcvae.train.latte_config import DenoiserOptions, TrainLatteConfig
from lcvae.train.train_latte import StepBatches, build_denoiser_for, main

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


pytestmark = pytest.mark.usefixtures("one_thread")


class SyntheticVideos(torch.utils.data.Dataset):
    """ClipDataset-shaped items: a smooth random video per (epoch, index), label index % 3."""

    def __init__(self, n: int = 6):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, key):
        epoch, index = key
        g = torch.Generator().manual_seed(100 * epoch + index)
        base = torch.rand(3, 1, 1, 1, generator=g) * 2 - 1
        video = (base + 0.2 * torch.randn(3, 33, 32, 32, generator=g)).clamp(-1, 1)
        return {
            "video": video,
            "path": f"synthetic/{index}",
            "label": index % 3,
            "caption": "",
            "index": index,
            "start": 0,
        }


def make_vae_and_cache(root: Path, seed: int = 0) -> tuple[Path, Path]:
    torch.manual_seed(seed)
    vae = LCVAE(get_preset("lcvae-tiny")).eval()
    save_pretrained(vae, root / "vae")
    request = CacheRequest(frames=33, height=32, width=32, shard_size=4, num_classes=3)
    cache_latents(vae, SyntheticVideos(), root / "cache", request, batch_size=3)
    return root / "vae", root / "cache"


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    return make_vae_and_cache(tmp_path_factory.mktemp("assets"))


def _config(run_dir, assets, *overrides) -> TrainLatteConfig:
    vae, cache = assets
    base = [
        f"run_dir={run_dir}",
        f"cache={cache}",
        f"vae={vae}",
        "model.preset=tiny",
        "model.class_dropout_prob=0.5",
        "batch_size=2",
        "log_every=1",
        "ckpt_every=2",
        "keep_last=null",
        "sample.every=0",
        "num_workers=0",
        "tensorboard=false",
        "optim.lr=1e-3",
    ]
    return load_config(TrainLatteConfig, None, base + list(overrides))


def _tensors(step_dir: Path) -> dict[str, torch.Tensor]:
    out = {f"{g}/{k}": v for g in ("model", "ema") for k, v in load_file(step_dir / f"{g}.safetensors").items()}
    opt = load_checkpoint(step_dir).state["optimizer"]["state"]
    out.update({f"opt/{i}/{k}": v for i, s in opt.items() for k, v in s.items()})
    return out


def test_resume_is_exact(assets, tmp_path):
    # 6 latents, batch 2: 3 steps per epoch, so steps 1-6 cross an epoch boundary after the restart
    whole = main(_config(tmp_path / "a", assets, "max_steps=6"))
    main(_config(tmp_path / "b", assets, "max_steps=3", "ckpt_every=3"))
    resumed = main(_config(tmp_path / "b", assets, "max_steps=6", "ckpt_every=3"))
    assert whole.name == resumed.name == "step_000000006"
    a, b = _tensors(whole), _tensors(resumed)
    assert a.keys() == b.keys() and len(a) > 20
    for key in a:
        assert torch.equal(a[key], b[key]), key
    # and the run did train: weights moved away from the zero-initialised output layer
    assert a["model/final_layer.linear.weight"].abs().max() > 0
    start = load_file(tmp_path / "a" / "checkpoints" / "step_000000002" / "model.safetensors")
    assert not torch.equal(start["final_layer.linear.weight"], a["model/final_layer.linear.weight"])


def test_resume_refuses_another_model(assets, tmp_path):
    main(_config(tmp_path, assets, "max_steps=1"))
    with pytest.raises(ValueError, match="another denoiser"):
        main(_config(tmp_path, assets, "max_steps=2", "model.preset=tiny-deep"))


def test_checkpoint_records_what_sampling_needs(assets, tmp_path):
    last = main(_config(tmp_path, assets, "max_steps=2", "tensorboard=true"))
    ckpt = load_checkpoint(last)
    vae = LCVAE(get_preset("lcvae-tiny"))
    assert ckpt.state["denoiser"]["kind"] == "latte"
    cfg = ckpt.state["denoiser"]["config"]
    # the latent shape comes from the VAE config; the class count from the cache
    assert (cfg["in_channels"], cfg["num_frames"], *cfg["input_size"]) == vae.config.diffusion_shape(33, 32, 32)
    assert cfg["num_classes"] == 3 and ckpt.state["video_shape"] == [33, 32, 32]
    assert ckpt.config["model"]["preset"] == "tiny" and ckpt.state["ema"]["num_updates"] == 2
    assert set(ckpt.weights["ema"]) == set(ckpt.weights["model"])
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


def test_training_refuses_a_cache_from_another_vae(assets, tmp_path):
    torch.manual_seed(7)
    other = save_pretrained(LCVAE(get_preset("lcvae-tiny")), tmp_path / "other_vae")
    with pytest.raises(ValueError, match="encoded by another VAE: weights differ"):
        main(_config(tmp_path / "run", assets, "max_steps=1", f"vae={other}"))


def test_labels_beyond_the_model_classes_are_refused(assets, tmp_path):
    with pytest.raises(ValueError, match=r"labels span \[0, 2\] but the model has 2 classes"):
        main(_config(tmp_path, assets, "max_steps=1", "model.num_classes=2"))


def test_step_batches_cover_each_epoch_once_and_restart_mid_stream():
    world, batch = 2, 3
    per_rank = [
        list(itertools.islice(StepBatches(14, batch, seed=5, rank=r, world_size=world), 4)) for r in range(world)
    ]
    # 14 latents over 2 ranks = 7 each = 2 batches of 3 per epoch; epoch 0 is steps 0-1
    epoch0 = [i for r in range(world) for b in per_rank[r][:2] for i in b]
    assert len(epoch0) == len(set(epoch0)) == 12
    perm = torch.randperm(14, generator=torch.Generator().manual_seed(5))
    assert per_rank[1][0] == perm[1::2][:3].tolist()
    assert set(per_rank[0][2]) != set(per_rank[0][0])  # epoch 1 is another permutation
    later = list(itertools.islice(StepBatches(14, batch, seed=5, rank=0, world_size=world, start_step=3), 1))
    assert later == per_rank[0][3:4]
    with pytest.raises(ValueError, match="fewer than one batch"):
        StepBatches(5, 3, seed=0, world_size=2)


def test_config_is_strict():
    with pytest.raises(ValueError, match="did you mean 'model.preset'"):
        load_config(TrainLatteConfig, None, ["run_dir=r", "cache=c", "vae=v", "model.presett=L"])
    with pytest.raises(ValueError, match="must be one of"):
        load_config(TrainLatteConfig, None, ["run_dir=r", "cache=c", "vae=v", "model.kind=unet"])


@pytest.mark.parametrize("name", ["latte_l_skytimelapse.yaml", "latte_l_ucf101.yaml", "latte_tiny_cpu.yaml"])
def test_shipped_configs_load(name):
    cfg = load_config(TrainLatteConfig, CONFIGS / name)
    assert cfg.optim.lr == 1e-4 and cfg.optim.weight_decay == 0.0 and cfg.model.learn_sigma
    if name != "latte_tiny_cpu.yaml":  # the paper's run (docs/generation.md#training-recipe)
        assert (cfg.model.preset, cfg.batch_size, cfg.ema_decay, cfg.sample.steps) == ("L", 40, 0.9999, 250)
        with torch.device("meta"):  # sizes only: no memory, no initialisation time
            model = build_denoiser_for(cfg.model, (8, 8, 4, 4), num_classes=101 if "ucf" in name else 0)
        assert (model.config.depth, model.config.hidden_size, model.config.num_heads) == (24, 1024, 16)


def test_denoiser_options_build_the_configured_kind():
    wan = build_denoiser_for(DenoiserOptions(kind="wan", learn_sigma=False), (4, 10, 4, 4), num_classes=0)
    assert wan.config.out_channels == 4 and wan.config.num_frames == 10
