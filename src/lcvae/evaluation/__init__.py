"""Evaluation: reconstruction metrics over a dataset (``lcvae eval``) and FVD between folders
(``lcvae fvd``). See :mod:`lcvae.evaluation.reconstruction` for the protocols."""

from lcvae.evaluation.folder_fvd import folder_features, folder_fvd
from lcvae.evaluation.job import EVAL_FRAMES, default_frames, describe_clips, eval_frames, evaluate_checkpoint
from lcvae.evaluation.reconstruction import (
    PROTOCOLS,
    ClipRecord,
    EvalOptions,
    EvalResult,
    ShardResult,
    evaluate,
    evaluate_shard,
    merge_shards,
)
from lcvae.evaluation.report import format_table, write_report
from lcvae.evaluation.setup import (
    COMPRESS_CHOICES,
    LPIPS_CHOICES,
    MetricNetworks,
    compression_config,
    load_networks,
    open_dataset,
    random_i3d,
    with_compression,
    with_default_mask,
)

__all__ = [
    "COMPRESS_CHOICES",
    "EVAL_FRAMES",
    "LPIPS_CHOICES",
    "PROTOCOLS",
    "ClipRecord",
    "EvalOptions",
    "EvalResult",
    "MetricNetworks",
    "ShardResult",
    "compression_config",
    "default_frames",
    "describe_clips",
    "eval_frames",
    "evaluate",
    "evaluate_checkpoint",
    "evaluate_shard",
    "folder_features",
    "folder_fvd",
    "format_table",
    "load_networks",
    "merge_shards",
    "open_dataset",
    "random_i3d",
    "with_compression",
    "with_default_mask",
    "write_report",
]
