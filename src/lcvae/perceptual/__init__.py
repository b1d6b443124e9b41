"""Perceptual networks (LPIPS, ST-LPIPS, I3D) written here, and loaders for their weights.

Weights are never downloaded: a missing file raises WeightsUnavailable, whose message says what
to provide; callers report the metric as skipped.
"""

from lcvae.perceptual.i3d import (
    I3DExtractor,
    InceptionI3d,
    TorchScriptI3D,
    VideoFeatureExtractor,
    load_i3d,
    preprocess_clips,
)
from lcvae.perceptual.lpips import LPIPS, LPIPSConfig, load_lpips, load_st_lpips, lpips_video
from lcvae.perceptual.weights import WeightsUnavailable

__all__ = [
    "I3DExtractor",
    "InceptionI3d",
    "LPIPS",
    "LPIPSConfig",
    "TorchScriptI3D",
    "VideoFeatureExtractor",
    "WeightsUnavailable",
    "load_i3d",
    "load_lpips",
    "load_st_lpips",
    "lpips_video",
    "preprocess_clips",
]
