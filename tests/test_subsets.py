"""Challenging-content subsets: texture and motion scores against independent computations, selection
rules, and manifests that the dataset class reads back."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lcvae.data import VideoFolder, VideoManifest, write_video
from lcvae.subsets import (
    block_displacements,
    block_displacements_reference,
    frame_difference,
    motion_score,
    score_dataset,
    select,
    texture_score,
    write_subsets,
)


def moving_square(frames: int = 9, step: int = 3, size: int = 64) -> np.ndarray:
    """uint8 (T, H, W, 3): a bright 16x16 square moving ``step`` pixels right per frame on grey."""
    out = np.full((frames, size, size, 3), 60, np.uint8)
    for t in range(frames):
        out[t, 20:36, 8 + step * t : 24 + step * t] = 220
    return out


def noise_frames(frames: int = 9, size: int = 64, seed: int = 0) -> np.ndarray:
    """Static fine texture: the same noise image every frame."""
    image = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    return np.broadcast_to(image, (frames, size, size, 3)).copy()


def as_clip(frames: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(frames).permute(3, 0, 1, 2).double() / 127.5 - 1


def test_texture_score_is_the_mean_2x2_block_variance_of_the_luma():
    clip = noise_frames(3, 16)
    y = (clip.astype(np.float64) / 255) @ np.array([0.299, 0.587, 0.114])  # (T, H, W) in [0, 1]
    blocks = y.reshape(3, 8, 2, 8, 2).transpose(0, 1, 3, 2, 4).reshape(3, 8, 8, 4)
    assert texture_score(as_clip(clip)) == pytest.approx(blocks.var(-1).mean(), rel=1e-12)
    flat = np.full((3, 16, 16, 3), 100, np.uint8)
    assert texture_score(as_clip(flat)) == 0.0
    assert texture_score(as_clip(clip)) > 10 * texture_score(as_clip(moving_square()))


def test_moving_square_scores_its_displacement_and_a_static_one_scores_zero():
    moving, static = as_clip(moving_square(step=3)), as_clip(moving_square(step=0))
    shifts, valid = block_displacements(moving, block=32)
    assert valid.any()
    measured = shifts[valid]
    assert torch.allclose(
        measured[:, 0], torch.zeros(len(measured), dtype=torch.float64), atol=0.05
    )  # no vertical motion
    # +3 px: right. Tiles the square only partly covers read up to 0.3 px low (the Hann window
    # weighs the part that left the tile), so the mean sits a little under 3.
    assert measured[:, 1].median() == pytest.approx(3.0, abs=0.05)
    assert measured[:, 1].min() > 2.6 and measured[:, 1].max() < 3.05
    assert motion_score(moving) == pytest.approx(3.0, abs=0.2)
    assert motion_score(static) == pytest.approx(0.0, abs=1e-9)
    # Texture without motion does not read as motion (a frame difference would not either, but it
    # rises with texture once anything moves); the texture clip is static.
    assert motion_score(as_clip(noise_frames())) == pytest.approx(0.0, abs=1e-9)
    assert frame_difference(moving) > 0 and frame_difference(static) == 0


def test_vectorised_displacements_equal_the_loop_twin():
    g = torch.Generator().manual_seed(0)
    base = torch.rand(1, 1, 80, 100, generator=g, dtype=torch.float64)
    frames = [torch.roll(base, shifts=(t, -2 * t), dims=(2, 3)) for t in range(4)]  # moves down 1, left 2
    video = torch.cat(frames, 1).expand(3, 4, 80, 100) * 2 - 1
    fast, fast_valid = block_displacements(video, block=16, min_std=0.05)
    plain, plain_valid = block_displacements_reference(video, block=16, min_std=0.05)
    assert fast.shape == (3, 5, 6, 2)
    assert torch.equal(fast_valid, plain_valid)
    assert torch.allclose(fast, plain, atol=1e-9)
    assert torch.allclose(fast[..., 0].median(), torch.tensor(1.0, dtype=torch.float64), atol=0.1)
    assert torch.allclose(fast[..., 1].median(), torch.tensor(-2.0, dtype=torch.float64), atol=0.1)


def test_selection_by_top_k_and_quantile():
    rows = [{"path": f"v{i}", "texture": float(s)} for i, s in enumerate([0.5, 0.1, 0.9, 0.3, 0.7])]
    chosen, threshold = select(rows, "texture", top_k=2)
    assert [r["path"] for r in chosen] == ["v2", "v4"] and threshold == 0.7
    chosen, threshold = select(rows, "texture", quantile=0.5)  # median of the five scores is 0.5
    assert [r["path"] for r in chosen] == ["v2", "v4", "v0"] and threshold == pytest.approx(0.5)
    with pytest.raises(ValueError, match="exactly one"):
        select(rows, "texture")
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        select(rows, "texture", quantile=1.5)
    with pytest.raises(ValueError, match="no clips"):
        select([], "texture", top_k=1)


def test_subsets_are_written_as_manifests_the_dataset_reads(tmp_path):
    videos = tmp_path / "videos"
    for name, frames in {
        "flat": np.full((9, 64, 64, 3), 90, np.uint8),
        "texture": noise_frames(),
        "square": moving_square(),
    }.items():
        write_video(videos / f"{name}.mp4", frames, fps=10, codec="libx264rgb", pix_fmt="rgb24", qp=0)
    dataset = VideoFolder(videos, num_frames=9)
    rows, skipped = score_dataset(dataset, progress=False)
    assert skipped == 0 and len(rows) == 3
    by_name = {r["path"].rsplit("/", 1)[-1]: r for r in rows}
    assert by_name["texture.mp4"]["texture"] > by_name["square.mp4"]["texture"] > by_name["flat.mp4"]["texture"] == 0
    assert by_name["square.mp4"]["motion"] == pytest.approx(3.0, abs=0.2)
    summary = write_subsets(rows, tmp_path / "out", top_k=1, clip_options={"num_frames": 9})
    assert summary["subsets"]["texture_heavy"]["count"] == 1
    assert json.loads((tmp_path / "out" / "subsets.json").read_text()) == summary
    assert len((tmp_path / "out" / "scores.jsonl").read_text().splitlines()) == 3
    texture = VideoManifest(tmp_path / "out" / "texture_heavy.jsonl", num_frames=9)
    motion = VideoManifest(tmp_path / "out" / "fast_motion.jsonl", num_frames=9)
    assert [e.path for e in texture.entries] == [str(videos.resolve() / "texture.mp4")]
    assert [e.path for e in motion.entries] == [str(videos.resolve() / "square.mp4")]
    assert motion[0]["video"].shape == (3, 9, 64, 64)


def smooth_texture(h: int, w: int, seed: int) -> np.ndarray:
    """Float (h, w) in [28, 228]: Gaussian-low-passed noise, texture in every direction."""
    r = np.random.default_rng(seed).normal(0, 1, (h, w))
    k2 = np.fft.fftfreq(h)[:, None] ** 2 + np.fft.fftfreq(w)[None, :] ** 2
    f = np.fft.ifft2(np.fft.fft2(r) * np.exp(-k2 / (2 * 0.08**2))).real
    return (f - f.min()) / (f.max() - f.min()) * 200 + 28


def known_motion_clips(t: int = 9, h: int = 96, w: int = 128) -> dict[str, np.ndarray]:
    """Grey clips (T, H, W, 3) uint8 whose motion is known by construction."""
    wide = smooth_texture(h, w + 4 * t, 1)
    still = smooth_texture(h, w, 2)
    a, b = smooth_texture(h, w, 3), smooth_texture(h, w, 4)
    block = np.full((t, h, w), 60.0)
    for k in range(t):
        block[k, 20:80, 10 + 3 * k : 70 + 3 * k] = 200  # a flat 60x60 block, 3 px right per frame
    clips = {
        "pan": np.stack([wide[:, 4 * k : 4 * k + w] for k in range(t)]),  # 4 px left per frame
        "noise": np.random.default_rng(0).integers(0, 256, (t, h, w)).astype(float),  # i.i.d. frames
        "block": block,
        "flicker": np.stack([still * (0.5 if k % 2 else 1.0) + (40 if k % 2 else 0) for k in range(t)]),
        "cut": np.stack([a if k < t // 2 else b for k in range(t)]),  # two static shots
    }
    return {k: np.repeat(np.clip(v, 0, 255).astype(np.uint8)[..., None], 3, -1) for k, v in clips.items()}


def test_motion_score_counts_only_coherent_motion():
    scores = {name: motion_score(as_clip(c)) for name, c in known_motion_clips().items()}
    assert scores["pan"] == pytest.approx(4.0, abs=0.1)
    assert scores["block"] == pytest.approx(3.0, abs=0.1)  # corners only: edges alone are ambiguous
    assert scores["noise"] == 0.0  # no tile pair has a clear correlation peak
    assert scores["cut"] < 0.01 and scores["flicker"] < 0.1  # static shots; the cut pair is rejected
    rows = [{"path": name, "motion": s} for name, s in scores.items()]
    chosen, _ = select(rows, "motion", top_k=2)
    assert [r["path"] for r in chosen] == ["pan", "block"]


def test_incoherent_peaks_and_lone_edges_are_not_valid_tiles():
    clips = known_motion_clips()
    _, valid = block_displacements(as_clip(clips["noise"]))
    assert valid.numel() == 8 * 3 * 4 and not valid.any()
    shifts, valid = block_displacements(as_clip(clips["cut"]))
    assert not valid[clips["cut"].shape[0] // 2 - 1].any()  # the pair across the cut
    assert valid[0].all() and shifts[valid].abs().max() < 0.01
    shifts, valid = block_displacements(as_clip(clips["block"]))
    # The 60x60 block's four corners sit in four of the twelve tiles (fewer while a corner crosses
    # into the next tile); the tiles that see only a side, or nothing, are left out.
    assert all(2 <= n <= 4 for n in valid.sum(dim=(1, 2)).tolist())
    assert not valid[:, 1].any()  # the middle tile row holds only the block's vertical sides
    assert shifts[valid][:, 1].min() > 2.6 and shifts[valid][:, 0].abs().max() < 0.05  # Hann bias, as above
    # The plain twin agrees on every rule.
    for name in ("noise", "block", "cut"):
        fast, fast_valid = block_displacements(as_clip(clips[name]), block=32)
        plain, plain_valid = block_displacements_reference(as_clip(clips[name]), block=32)
        assert torch.equal(fast_valid, plain_valid), name
        assert torch.allclose(fast[fast_valid], plain[plain_valid], atol=1e-9)  # flat tiles: argmax of rounding noise
