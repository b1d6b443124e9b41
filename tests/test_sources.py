"""lcvae.data.sources: one dispatch from (kind, path) to a dataset, for every command."""

from __future__ import annotations

import pytest
import torch

from _video_fixtures import pattern_frames, write_av
from lcvae.data import UCF101, VideoFolder, VideoManifest
from lcvae.data.sources import clip_fps, dataset_num_classes, open_clip_dataset, resolve_kind


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("sources")
    for cls, name in (("Archery", "v_Archery_g01_c01"), ("Biking", "v_Biking_g01_c01")):
        (root / "ucf" / cls).mkdir(parents=True)
        write_av(root / "ucf" / cls / f"{name}.avi", pattern_frames(6, 16, 16), rate=20)
    (root / "manifest.csv").write_text("path,label\nucf/Biking/v_Biking_g01_c01.avi,4\n")
    return root


def test_auto_kind_follows_the_path(videos):
    assert resolve_kind(videos / "ucf") == "folder"
    assert resolve_kind(videos / "manifest.csv") == "manifest"
    assert resolve_kind(videos / "ucf" / "Biking" / "v_Biking_g01_c01.avi") == "file"
    assert resolve_kind(videos / "ucf", "ucf101") == "ucf101"


def test_each_kind_gives_its_dataset(videos):
    clip = dict(num_frames=4, frame_stride=1)
    assert type(open_clip_dataset("auto", videos / "ucf", **clip)) is VideoFolder
    manifest = open_clip_dataset("auto", videos / "manifest.csv", **clip)
    assert type(manifest) is VideoManifest and dataset_num_classes(manifest) == 5  # labels 0..4
    ucf = open_clip_dataset("ucf101", videos / "ucf", **clip)
    assert type(ucf) is UCF101 and dataset_num_classes(ucf) == 2
    one = open_clip_dataset("auto", videos / "ucf" / "Archery" / "v_Archery_g01_c01.avi", **clip)
    assert len(one) == 1 and one[0]["video"].shape == (3, 4, 16, 16)
    expected = torch.from_numpy(pattern_frames(6, 16, 16)[:4]).permute(3, 0, 1, 2).float() / 127.5 - 1
    torch.testing.assert_close(one[0]["video"], expected, atol=2 / 255, rtol=0)  # lossless file: the frames
    assert clip_fps(one) == 20.0
    assert clip_fps(open_clip_dataset("folder", videos / "ucf", num_frames=2, frame_stride=2)) == 10.0


def test_bad_kinds_and_misplaced_split_files_are_refused(videos):
    with pytest.raises(ValueError, match="did you mean 'manifest'"):
        open_clip_dataset("manifst", videos / "manifest.csv")
    with pytest.raises(ValueError, match="split file applies to UCF-101 only"):
        open_clip_dataset("folder", videos / "ucf", split_file=videos / "list.txt")
    with pytest.raises(ValueError, match="needs a video file"):
        open_clip_dataset("file", videos / "ucf")
