"""Video data: PyAV decoding and writing, clip transforms, datasets, H.264 degradation."""

from .datasets import (ClipDataset, EpochSampler, SkipCounter, Skipped, SkyTimelapse, UCF101,
                       VideoEntry, VideoFolder, VideoManifest, collate, item_generator, make_loader)
from .degrade import degrade_frames, degrade_video
from .samples import SAMPLE_CLIPS, sample_clip_path, sample_clip_paths
from .transforms import (ClipTransform, center_crop, crop_to_multiple, hflip, random_crop,
                         random_hflip, resize, resize_short_side, resize_to_multiple)
from .video import (VIDEO_EXTENSIONS, NotEnoughFramesError, VideoError, VideoInfo, VideoReader,
                    encode_to_bytes, probe, read_image, read_video, to_tensor, to_uint8, write_video)

__all__ = [
    "ClipDataset", "EpochSampler", "SkipCounter", "Skipped", "SkyTimelapse", "UCF101", "VideoEntry",
    "VideoFolder", "VideoManifest", "collate", "item_generator", "make_loader",
    "degrade_frames", "degrade_video", "SAMPLE_CLIPS", "sample_clip_path", "sample_clip_paths",
    "ClipTransform", "center_crop", "crop_to_multiple", "hflip", "random_crop", "random_hflip",
    "resize", "resize_short_side", "resize_to_multiple",
    "VIDEO_EXTENSIONS", "NotEnoughFramesError", "VideoError", "VideoInfo", "VideoReader",
    "encode_to_bytes", "probe", "read_image", "read_video", "to_tensor", "to_uint8", "write_video",
]
