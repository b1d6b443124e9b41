"""Transforms and datasets: exact clip content, seeded determinism, skip-and-count, loaders,
UCF-101 labels and splits, Sky Timelapse folders, CSV/JSONL manifests."""

import json
import logging

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from _video_fixtures import pattern_frames, write_av
from lcvae.data import transforms as T
from lcvae.data.datasets import (
    UCF101,
    EpochSampler,
    SkipCounter,
    Skipped,
    SkyTimelapse,
    VideoFolder,
    VideoManifest,
    collate,
    make_loader,
)
from lcvae.data.video import to_tensor

N, H, W = 24, 24, 32


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Five good clips (frame i of clip c = pattern frame i + 3c) in nested folders and formats."""
    root = tmp_path_factory.mktemp("vids")
    (root / "sub" / "deeper").mkdir(parents=True)
    names = ["a.mp4", "b.mkv", "sub/c.avi", "sub/deeper/d.MOV", "sub/e.webm"]
    frames = pattern_frames(N + 12, H, W)
    for c, name in enumerate(names):
        # Lossless RGB in every container (VP9 with planar RGB for WebM): values compare exactly.
        vp9 = {"codec": "libvpx-vp9", "pix_fmt": "gbrp", "options": {"lossless": "1"}}
        write_av(root / name, frames[3 * c : 3 * c + N], **(vp9 if name.endswith("webm") else {}))
    (root / ".hidden.mp4").write_bytes(b"temporary file of a writer")
    (root / "notes.txt").write_text("not a video")
    return root, sorted(str(root / n) for n in names), frames


def clip_of(frames, c, start, n, stride=1):
    return to_tensor(frames[3 * c + start : 3 * c + start + n * stride : stride])


# transforms ---------------------------------------------------------------------------------


def test_area_resize_is_block_mean():
    x = torch.rand(3, 4, 8, 12) * 2 - 1
    want = x.reshape(3, 4, 4, 2, 6, 2).mean(dim=(3, 5))
    torch.testing.assert_close(T.resize(x, 4, 6, mode="area"), want)


def test_bicubic_antialias_removes_checkerboard_and_keeps_flat():
    yy, xx = torch.meshgrid(torch.arange(64), torch.arange(64), indexing="ij")
    checker = ((yy + xx) % 2 * 2 - 1).float().expand(3, 2, 64, 64)
    small = T.resize_short_side(checker, 21)
    assert small.shape == (3, 2, 21, 21) and small.abs().max() < 0.05
    aliased = F.interpolate(checker.transpose(0, 1), size=(21, 21), mode="bicubic", antialias=False)
    assert aliased.abs().max() > 0.5  # what the antialias prevents
    flat = torch.full((3, 2, 30, 50), 0.25)
    torch.testing.assert_close(T.resize_short_side(flat, 12), torch.full((3, 2, 12, 20), 0.25))


def test_short_side_sizes_and_clamping():
    assert T.short_side_size(720, 1280, 256) == (256, 455)
    assert T.short_side_size(1280, 720, 256) == (455, 256)
    x = torch.where(torch.rand(3, 1, 40, 40) > 0.5, 1.0, -1.0)
    up = T.resize(x, 97, 97)
    assert up.min() >= -1 and up.max() <= 1


def test_crops_and_flip_match_manual_slicing():
    x = torch.arange(3 * 2 * 10 * 13, dtype=torch.float32).reshape(3, 2, 10, 13)
    assert torch.equal(T.center_crop(x, 6), x[..., 2:8, 3:9])
    assert torch.equal(T.center_crop(x, (4, 7)), x[..., 3:7, 3:10])
    assert torch.equal(T.hflip(x), x[..., torch.arange(12, -1, -1)])
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    a, b = T.random_crop(x, 6, g1), T.random_crop(x, 6, g2)
    assert torch.equal(a, b)
    tops_lefts = {T.random_crop(x, 6, torch.Generator().manual_seed(s))[0, 0, 0, 0].item() for s in range(20)}
    assert len(tops_lefts) > 5  # offsets vary with the seed
    for v in tops_lefts:  # every crop is a real window of x
        top, left = divmod(int(v), 13)
        assert top <= 4 and left <= 7
    with pytest.raises(ValueError, match="larger than"):
        T.center_crop(x, 11)


def test_fit_to_multiple_only_when_asked():
    x = torch.zeros(3, 1, 37, 50)
    assert T.crop_to_multiple(x, 16).shape[-2:] == (32, 48)
    assert T.resize_to_multiple(x, 16).shape[-2:] == (32, 48)
    assert T.ClipTransform()(x).shape == x.shape
    assert T.ClipTransform(multiple=8)(x).shape[-2:] == (32, 48)


def test_resize_does_not_depend_on_chunking():
    x = torch.rand(3, 7, 30, 41) * 2 - 1
    for mode in ("bicubic", "area"):
        one, seven = (T.resize(x, 13, 17, mode=mode, chunk=c) for c in (1, 7))
        assert torch.equal(one, seven)


def test_chunked_frames_path_equals_whole_clip_transform():
    frames = torch.from_numpy(pattern_frames(20, 36, 52))
    tf = T.ClipTransform(short_side=20, crop=16, random_crop=True, hflip=True)
    fast = tf.apply_to_frames(frames, torch.Generator().manual_seed(3))
    plain = tf(to_tensor(frames), torch.Generator().manual_seed(3))
    assert fast.shape == (3, 20, 16, 16)
    torch.testing.assert_close(fast, plain, rtol=0, atol=0)
    for tf in (T.ClipTransform(), T.ClipTransform(crop=20), T.ClipTransform(short_side=30, multiple=16)):
        torch.testing.assert_close(tf.apply_to_frames(frames), tf(to_tensor(frames)), rtol=0, atol=0)


def test_transform_config_errors():
    with pytest.raises(ValueError, match="crop 300 exceeds short_side 256"):
        T.ClipTransform(short_side=256, crop=300)
    with pytest.raises(ValueError, match="Generator"):
        T.ClipTransform(crop=8, random_crop=True)(torch.zeros(3, 1, 10, 10))


# datasets -----------------------------------------------------------------------------------


def test_video_folder_finds_all_formats_recursively_with_exact_content(folder):
    root, paths, frames = folder
    ds = VideoFolder(root, num_frames=6, frame_stride=2, start_frame=3)
    assert [e.path for e in ds.entries] == paths
    for c in range(len(paths)):
        item = ds[c]
        assert set(item) == {"video", "path", "label", "caption", "index", "start"}
        assert (item["path"], item["label"], item["caption"], item["index"], item["start"]) == (paths[c], -1, "", c, 3)
        torch.testing.assert_close(item["video"], clip_of(frames, c, 3, 6, 2), rtol=0, atol=0)


def test_random_start_is_a_true_window_and_deterministic_per_seed(folder):
    root, paths, frames = folder
    opts = dict(num_frames=5, random_start=True, short_side=16, crop=12, random_crop=True, hflip=True)
    a, b = VideoFolder(root, seed=1, **opts), VideoFolder(root, seed=1, **opts)
    other = VideoFolder(root, seed=2, **opts)
    order_a = [a[i]["video"] for i in range(5)]
    order_b = [b[i]["video"] for i in reversed(range(5))][::-1]  # other access order, same items
    assert all(torch.equal(x, y) for x, y in zip(order_a, order_b))
    assert sum(torch.equal(x, other[i]["video"]) for i, x in enumerate(order_a)) <= 1
    a.set_epoch(1)
    assert sum(torch.equal(x, a[i]["video"]) for i, x in enumerate(order_a)) <= 1
    assert torch.equal(a[(0, 2)]["video"], order_a[2])  # (epoch, index) keys carry the epoch
    plain = VideoFolder(root, num_frames=5, random_start=True, seed=1)
    starts = set()
    for i in range(5):  # without transforms the clip must be 5 consecutive source frames
        v = plain[i]["video"]
        matches = [s for s in range(N - 4) if torch.equal(v, clip_of(frames, i, s, 5))]
        assert matches == [plain[i]["start"]]
        starts.add(matches[0])
    assert len(starts) > 1


def test_target_fps_in_dataset_resamples(folder):
    root, _, frames = folder
    ds = VideoFolder(root, num_frames=8, target_fps=12.5)
    torch.testing.assert_close(ds[0]["video"], clip_of(frames, 0, 0, 8, 2), rtol=0, atol=0)


@pytest.fixture()
def messy(tmp_path):
    good = pattern_frames(20, 16, 16)
    write_av(tmp_path / "good1.mp4", good)
    write_av(tmp_path / "good2.mp4", good[::-1].copy())
    write_av(tmp_path / "short.mp4", good[:6])
    (tmp_path / "corrupt.mp4").write_bytes(np.random.default_rng(0).bytes(3000))
    return tmp_path


def test_bad_videos_are_skipped_logged_once_and_never_substituted(messy, caplog):
    ds = VideoFolder(messy, num_frames=10)
    names = [e.path.rsplit("/", 1)[1] for e in ds.entries]
    assert names == ["corrupt.mp4", "good1.mp4", "good2.mp4", "short.mp4"]
    with caplog.at_level(logging.WARNING, logger="lcvae.data.datasets"):
        items = [ds[i] for i in range(4)] + [ds[0], ds[3]]
    assert isinstance(items[0], Skipped) and "not a readable video" in items[0].reason
    assert isinstance(items[3], Skipped) and "has 6 frames" in items[3].reason
    assert (items[0].index, items[3].index) == (0, 3)
    assert [r.getMessage().split(":")[0] for r in caplog.records] == [
        f"skipping {ds.entries[0].path}",
        f"skipping {ds.entries[3].path}",
    ]
    batch = collate(items[:4])
    assert batch["path"] == [ds.entries[1].path, ds.entries[2].path]
    assert batch["video"].shape == (2, 3, 10, 16, 16)
    assert batch["label"].tolist() == [-1, -1] and batch["index"].tolist() == [1, 2]
    counter = SkipCounter()
    assert counter.update(batch) == 2
    assert counter.count == 2 and "skipped 2 clips from 2 files" in counter.summary()
    empty = collate([items[0]])
    assert empty["video"].numel() == 0 and empty["path"] == [] and len(empty["skipped"]) == 1


def test_video_too_small_for_crop_is_skipped_not_fatal(messy):
    ds = VideoFolder(messy, num_frames=4, crop=20)
    item = ds[1]
    assert isinstance(item, Skipped) and "crop 20x20 is larger than the 16x16 frames" in item.reason
    assert VideoFolder(messy, num_frames=4, crop=12)[1]["video"].shape == (3, 4, 12, 12)


def test_skip_counts_reach_main_process_from_workers(messy):
    ds = VideoFolder(messy, num_frames=10)
    counter, seen = SkipCounter(), []
    loader = make_loader(ds, batch_size=2, shuffle=True, seed=3, num_workers=2)
    for epoch in range(2):
        loader.sampler.set_epoch(epoch)
        for batch in loader:
            counter.update(batch)
            seen += batch["path"]
    assert counter.count == 4 and len(counter.reasons) == 2
    assert sorted(seen) == sorted([ds.entries[1].path, ds.entries[2].path] * 2)


def test_worker_count_does_not_change_batches(folder):
    root, _, _ = folder
    ds = VideoFolder(
        root, num_frames=4, random_start=True, short_side=16, crop=16, random_crop=True, hflip=True, seed=7
    )
    runs = []
    for workers in (0, 2):
        loader = make_loader(ds, batch_size=2, shuffle=True, seed=11, num_workers=workers)
        loader.sampler.set_epoch(1)
        runs.append([(b["index"].tolist(), b["video"]) for b in loader])
    assert [r[0] for r in runs[0]] == [r[0] for r in runs[1]]
    assert all(torch.equal(x[1], y[1]) for x, y in zip(*runs))


def test_epoch_sampler_shards_ranks_and_carries_epoch():
    ds = list(range(10))
    r0 = EpochSampler(ds, shuffle=True, seed=0, rank=0, world_size=2)
    r1 = EpochSampler(ds, shuffle=True, seed=0, rank=1, world_size=2)
    for s in (r0, r1):
        s.set_epoch(3)
    a, b = list(r0), list(r1)
    assert {e for e, _ in a + b} == {3} and len(a) == len(b) == 5
    assert sorted(i for _, i in a + b) == list(range(10))
    r0.set_epoch(4)
    assert [i for _, i in r0] != [i for _, i in a]


def test_empty_dataset_names_path_and_extensions(tmp_path):
    (tmp_path / "x.txt").write_text("no videos")
    with pytest.raises(ValueError, match=rf"no videos found in {tmp_path} \(searched for .mp4, .avi"):
        VideoFolder(tmp_path)
    with pytest.raises(ValueError, match="does not exist"):
        VideoFolder(tmp_path / "missing")


@pytest.fixture()
def ucf(tmp_path):
    root = tmp_path / "UCF-101"
    frames = pattern_frames(12, 16, 16)
    for c, cls in enumerate(["Basketball", "ApplyEyeMakeup", "BlowDryHair"]):
        (root / cls).mkdir(parents=True)
        for g in (1, 2):
            write_av(root / cls / f"v_{cls}_g0{g}_c01.avi", frames[c + g : c + g + 8], gop=None)
    return root


def test_ucf101_labels_follow_sorted_class_folders(ucf):
    ds = UCF101(ucf, num_frames=4)
    assert ds.classes == ["ApplyEyeMakeup", "Basketball", "BlowDryHair"]
    got = {e.path.rsplit("/", 1)[1]: e.label for e in ds.entries}
    assert got == {
        "v_ApplyEyeMakeup_g01_c01.avi": 0,
        "v_ApplyEyeMakeup_g02_c01.avi": 0,
        "v_Basketball_g01_c01.avi": 1,
        "v_Basketball_g02_c01.avi": 1,
        "v_BlowDryHair_g01_c01.avi": 2,
        "v_BlowDryHair_g02_c01.avi": 2,
    }
    assert ds[2]["label"] == 1 and ds[2]["video"].shape == (3, 4, 16, 16)


def test_ucf101_split_files(ucf, tmp_path, caplog):
    train = tmp_path / "trainlist01.txt"
    train.write_text("ApplyEyeMakeup/v_ApplyEyeMakeup_g02_c01.avi 1\r\nblowdryhair/v_BlowDryHair_g01_c01.avi 3\r\n\r\n")
    ds = UCF101(ucf, split_file=train, num_frames=4)
    assert [(e.path.rsplit("/", 1)[1], e.label) for e in ds.entries] == [
        ("v_ApplyEyeMakeup_g02_c01.avi", 0),
        ("v_BlowDryHair_g01_c01.avi", 2),
    ]
    test = tmp_path / "testlist01.txt"
    test.write_text("Basketball/v_Basketball_g01_c01.avi\n")
    assert [e.label for e in UCF101(ucf, split_file=test).entries] == [1]
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("Basketball/v_Basketball_g01_c01.avi 5\n")
    with caplog.at_level(logging.WARNING):
        assert [e.label for e in UCF101(ucf, split_file=wrong).entries] == [1]
    assert "1 labels differ" in caplog.text
    missing = tmp_path / "missing.txt"
    missing.write_text("Basketball/v_Basketball_g09_c01.avi\n")
    with pytest.raises(ValueError, match="lists 1 videos not found.*v_Basketball_g09_c01.avi"):
        UCF101(ucf, split_file=missing)


def test_sky_timelapse_folders_are_videos_in_name_order(tmp_path):
    from PIL import Image

    frames = pattern_frames(9, 12, 20)
    for v, folder in enumerate(["sky/a/clip1", "sky/a/clip2", "sky/b/clip1"]):
        d = tmp_path / folder
        d.mkdir(parents=True)
        for i in reversed(range(9 - v)):  # written out of order; names sort them
            Image.fromarray(frames[i]).save(d / f"frame_{i:04d}.png")
    (tmp_path / "sky" / "readme.txt").write_text("x")
    ds = SkyTimelapse(tmp_path / "sky", num_frames=4, frame_stride=2, start_frame=0)
    rel = [e.path[len(str(tmp_path)) + 1 :] for e in ds.entries]
    assert rel == ["sky/a/clip1", "sky/a/clip2", "sky/b/clip1"]
    torch.testing.assert_close(ds[0]["video"], to_tensor(frames[0:8:2]), rtol=0, atol=0)
    torch.testing.assert_close(ds[2]["video"], to_tensor(frames[0:7:2]), rtol=0, atol=0)
    longer = SkyTimelapse(tmp_path / "sky", num_frames=5, frame_stride=2)
    assert not isinstance(longer[0], Skipped)
    assert isinstance(longer[1], Skipped) and "has 8 frames" in longer[1].reason
    assert "which needs 9" in longer[1].reason
    with_av = SkyTimelapse(tmp_path / "sky", num_frames=4, frame_stride=2, image_backend="av")
    assert torch.equal(with_av[1]["video"], ds[1]["video"])
    rnd = SkyTimelapse(tmp_path / "sky", num_frames=3, random_start=True, seed=4)
    v = rnd[0]["video"]
    assert sum(torch.equal(v, to_tensor(frames[s : s + 3])) for s in range(7)) == 1
    with pytest.raises(ValueError, match="use frame_stride"):
        SkyTimelapse(tmp_path / "sky", target_fps=10)


def test_manifest_csv_and_jsonl(tmp_path, folder):
    root, paths, frames = folder
    (tmp_path / "m").mkdir()
    write_av(tmp_path / "m" / "rel.mp4", frames[:N])
    csv_path = tmp_path / "m" / "list.csv"
    csv_path.write_text(f'path,caption,label,duration\nrel.mp4,"a cat, running",3,1.0\n{paths[1]},,,2\n')
    ds = VideoManifest(csv_path, num_frames=4)
    assert [(e.path, e.label, e.caption) for e in ds.entries] == [
        (str(tmp_path / "m" / "rel.mp4"), 3, "a cat, running"),
        (paths[1], -1, ""),
    ]
    item = ds[0]
    assert item["caption"] == "a cat, running" and item["label"] == 3
    torch.testing.assert_close(item["video"], to_tensor(frames[:4]), rtol=0, atol=0)
    jl = tmp_path / "m" / "list.jsonl"
    jl.write_text(
        json.dumps({"path": "rel.mp4", "caption": "dog"}) + "\n\n" + json.dumps({"path": paths[0], "label": 7}) + "\n"
    )
    assert [(e.label, e.caption) for e in VideoManifest(jl).entries] == [(-1, "dog"), (7, "")]
    bad = tmp_path / "m" / "bad.csv"
    bad.write_text("path,captoin\nrel.mp4,x\n")
    with pytest.raises(ValueError, match="did you mean 'caption'"):
        VideoManifest(bad)
    bad.write_text("file\nrel.mp4\n")
    with pytest.raises(ValueError, match="needs a 'path' column"):
        VideoManifest(bad)
    bad.write_text("path,label\nrel.mp4,cat\n")
    with pytest.raises(ValueError, match="row 1: label must be an integer"):
        VideoManifest(bad)
    empty = tmp_path / "m" / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(ValueError, match="no videos found in"):
        VideoManifest(empty)
