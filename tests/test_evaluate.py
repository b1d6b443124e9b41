"""lcvae eval: metrics against independent computations, skip-and-count, protocols, degradation,
mask override, rank sharding (simulated and a real 2-process gloo run), reports and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import save_file
from torch import Tensor

from _video_fixtures import decode_all, textured_frames, write_av
from lcvae.cli import main
from lcvae.compression import multi_iwt_reference, multi_wt_reference
from lcvae.data.degrade import degrade_frames
from lcvae.data.video import probe, read_video, to_tensor
from lcvae.evaluation import (
    EvalOptions,
    MetricNetworks,
    default_frames,
    eval_frames,
    evaluate,
    evaluate_shard,
    format_table,
    load_networks,
    merge_shards,
    open_dataset,
    random_i3d,
    with_compression,
    write_report,
)
from lcvae.masks import CompressionConfig, block_mask
from lcvae.metrics import PSNR_CAP_DB, psnr
from lcvae.models.io import from_pretrained, save_pretrained
from lcvae.models.lcvae import LCVAE, LCVAEConfig
from lcvae.models.wfvae import WFVAEConfig
from lcvae.perceptual import load_st_lpips

SIZE = 32
FRAMES = 9  # 1 + 4k for the causal tiny model, and I3D's minimum
CLIP_FRAMES = 36  # long enough for 33-frame (1 + 32k) clips too
GOOD = ("a0.mp4", "a1.mp4", "c2.mp4", "c3.mp4")


# ------------------------------------------------------------------ fixtures and helpers


def tiny_model(seed: int = 0) -> LCVAE:
    """Causal WF-VAE without compression: 8 latent channels, base width 8, 1 + 4k frames."""
    torch.manual_seed(seed)
    cfg = LCVAEConfig(
        backbone=WFVAEConfig(
            base_channels=8, encoder_energy_flow=8, decoder_energy_flow=8, latent_channels=8, causal=True
        )
    )
    return LCVAE(cfg).eval()


class PooledFeatures:
    """A cheap stand-in for I3D: per-channel mean, std and mean |frame difference| (9 dims)."""

    name = "pooled-test-features"
    dim = 9

    def to(self, device) -> PooledFeatures:
        return self

    def __call__(self, videos: Tensor) -> Tensor:
        motion = (videos[:, :, 1:] - videos[:, :, :-1]).abs().mean(dim=(2, 3, 4))
        return torch.cat([videos.mean(dim=(2, 3, 4)), videos.std(dim=(2, 3, 4)), motion], dim=1)


def cheap_networks(lpips: bool = False) -> MetricNetworks:
    return MetricNetworks(
        lpips=load_st_lpips("alex") if lpips else None,
        lpips_skipped=None if lpips else "not requested",
        extractor=PooledFeatures(),
    )


def numpy_psnr(a: np.ndarray, b: np.ndarray) -> float:
    """(T, H, W, 3) in [0, 1]: PSNR per frame, averaged; written apart from lcvae.metrics."""
    mse = ((a.astype(np.float64) - b.astype(np.float64)) ** 2).reshape(a.shape[0], -1).mean(axis=1)
    return float(np.mean(-10 * np.log10(mse)))


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    """Four good lossless clips, a corrupt file (sorted third) and a too-short clip (sorted last)."""
    folder = tmp_path_factory.mktemp("clips")
    for k, name in enumerate(GOOD):
        write_av(folder / name, textured_frames(CLIP_FRAMES, SIZE, SIZE, seed=k))
    (folder / "bad.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not a video at all" * 20)
    write_av(folder / "short.mp4", textured_frames(5, SIZE, SIZE, seed=9))
    return folder


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return save_pretrained(tiny_model(), tmp_path_factory.mktemp("ckpt") / "tiny")


@pytest.fixture(scope="module")
def dataset(clips):
    return open_dataset(clips, frames=FRAMES, size=SIZE)


@pytest.fixture(scope="module")
def one_process(dataset, checkpoint):
    """The single-process result the rank tests compare with (batch size 1, ST-LPIPS, cheap features)."""
    return evaluate(
        from_pretrained(checkpoint).eval(), dataset, EvalOptions(progress=False), cheap_networks(lpips=True)
    )


def identity(model: LCVAE, monkeypatch) -> LCVAE:
    monkeypatch.setattr(model, "reconstruct", lambda x, *args, **kwargs: x)
    return model


# ------------------------------------------------------------------ metrics and counting


def test_identity_model_scores_the_psnr_cap_ssim_one_and_zero_rfvd(dataset, monkeypatch):
    result = evaluate(identity(tiny_model(), monkeypatch), dataset, EvalOptions(progress=False), cheap_networks())
    assert [r.metrics["vs_input"]["psnr"] for r in result.records] == [PSNR_CAP_DB] * 4
    assert all(abs(r.metrics["vs_input"]["ssim"] - 1.0) < 1e-12 for r in result.records)
    summary = result.metric_sets["vs_input"]
    assert summary["psnr"]["mean"] == PSNR_CAP_DB and summary["psnr"]["std"] == 0.0 and summary["psnr"]["n"] == 4
    assert summary["rfvd"]["value"] < 1e-9 and summary["rfvd"]["kind"] == "dataset-level"


def test_corrupt_and_short_clips_are_skipped_and_counted_never_substituted(dataset, clips, tmp_path):
    model = tiny_model()
    result = evaluate(model, dataset, EvalOptions(progress=False, batch_size=2), cheap_networks())
    assert [Path(r.path).name for r in result.records] == list(GOOD)  # each good clip once, in order
    assert [r.index for r in result.records] == [0, 1, 3, 4]
    assert {Path(s.path).name: s.index for s in result.skipped} == {"bad.mp4": 2, "short.mp4": 5}
    short = next(s for s in result.skipped if s.path.endswith("short.mp4"))
    assert "5 frames" in short.reason
    # each clip's PSNR equals an independent decode + reconstruction + numpy PSNR
    for rec in result.records:
        frames = decode_all(Path(rec.path))[:FRAMES]
        x = torch.from_numpy(frames).permute(3, 0, 1, 2).float().div(127.5).sub(1)[None]
        with torch.no_grad():
            y = model.reconstruct(x).clamp(-1, 1)
        expected = numpy_psnr(frames / 255.0, ((y[0].permute(1, 2, 3, 0).numpy() + 1) / 2))
        assert rec.metrics["vs_input"]["psnr"] == pytest.approx(expected, abs=1e-4)
    paths = write_report(result, tmp_path, {"data": {"path": str(clips)}})
    saved = json.loads(paths["metrics"].read_text())
    assert saved["clips"]["used"] == 4 and saved["clips"]["skipped"] == 2
    assert sorted(Path(s["path"]).name for s in saved["clips"]["skipped_reasons"]) == ["bad.mp4", "short.mp4"]
    assert all(s["reason"] for s in saved["clips"]["skipped_reasons"])
    assert saved["protocol"]["name"] == "standard" and saved["data"]["path"] == str(clips)
    lines = [json.loads(line) for line in paths["per_clip"].read_text().splitlines()]
    assert [line["index"] for line in lines] == [0, 1, 3, 4]
    psnrs = [line["vs_input"]["psnr"] for line in lines]
    assert saved["metrics"]["vs_input"]["psnr"]["mean"] == pytest.approx(np.mean(psnrs), abs=1e-12)
    assert saved["metrics"]["vs_input"]["psnr"]["std"] == pytest.approx(np.std(psnrs, ddof=1), abs=1e-12)
    table = paths["table"].read_text()
    assert "clips: 4 used, 2 skipped" in table and "bad.mp4" in table


# ------------------------------------------------------------------ ranks


def _same_result(a, b) -> None:
    assert [(r.index, r.path, r.start) for r in a.records] == [(r.index, r.path, r.start) for r in b.records]
    for ra, rb in zip(a.records, b.records):
        for metric, value in ra.metrics["vs_input"].items():
            assert value == rb.metrics["vs_input"][metric]
    assert [(s.index, s.path) for s in a.skipped] == [(s.index, s.path) for s in b.skipped]
    sa, sb = a.metric_sets["vs_input"], b.metric_sets["vs_input"]
    for metric in ("psnr", "ssim", "lpips"):
        assert sa[metric]["mean"] == pytest.approx(sb[metric]["mean"], abs=1e-12)
        assert sa[metric]["n"] == sb[metric]["n"] == 4
    assert sa["rfvd"]["value"] == pytest.approx(sb["rfvd"]["value"], rel=1e-9)
    assert sa["rfvd"]["value"] > 1e-6


def test_two_rank_shards_merge_to_the_one_process_result(dataset, checkpoint, one_process):
    # batch size 1: a clip's reconstruction is then bitwise independent of its batch mates, so only
    # the summation order of the FVD statistics can differ between 1 and 2 ranks
    model, nets, opts = from_pretrained(checkpoint).eval(), cheap_networks(lpips=True), EvalOptions(progress=False)
    shards = [evaluate_shard(model, dataset, opts, nets, rank=r, world_size=2) for r in (0, 1)]
    seen = [sorted([r.index for r in s.records] + [k.index for k in s.skipped]) for s in shards]
    assert seen == [[0, 2, 4], [1, 3, 5]]  # striding: no clip twice, none padded in
    assert [s.stats["recon"].n for s in shards] == [2, 2]
    merged = merge_shards(shards, dataset, opts, nets)
    assert merged.world_size == 2
    _same_result(merged, one_process)


def _gloo_worker(rank: int, world_size: int, folder: str, ckpt: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{out}/rendezvous", rank=rank, world_size=world_size)
    try:
        torch.set_num_threads(1)
        data = open_dataset(folder, frames=FRAMES, size=SIZE)
        result = evaluate(from_pretrained(ckpt).eval(), data, EvalOptions(progress=False), cheap_networks(lpips=True))
        rows = [[r.index, r.path, r.start, r.metrics] for r in result.records]
        Path(out, f"rank{rank}.json").write_text(json.dumps({"summary": result.to_dict(), "records": rows}))
    finally:
        dist.destroy_process_group()


def test_two_process_gloo_run_equals_one_process(clips, checkpoint, one_process, tmp_path):
    mp.spawn(_gloo_worker, args=(2, str(clips), str(checkpoint), str(tmp_path)), nprocs=2, join=True)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0] == ranks[1]  # every rank returns the merged result
    got = ranks[0]
    assert got["summary"]["world_size"] == 2
    one = one_process
    assert [row[:3] for row in got["records"]] == [[r.index, r.path, r.start] for r in one.records]
    for row, rec in zip(got["records"], one.records):
        for metric, value in rec.metrics["vs_input"].items():
            assert row[3]["vs_input"][metric] == pytest.approx(value, rel=1e-5)  # 1 vs 2 threads: float32 order
    assert got["summary"]["clips"] == one.to_dict()["clips"]
    expected = one.metric_sets["vs_input"]
    for metric in ("psnr", "ssim", "lpips"):
        assert got["summary"]["metrics"]["vs_input"][metric]["mean"] == pytest.approx(
            expected[metric]["mean"], rel=1e-5
        )
    assert got["summary"]["metrics"]["vs_input"]["rfvd"]["value"] == pytest.approx(expected["rfvd"]["value"], rel=1e-4)


# ------------------------------------------------------------------ protocols


class Spy:
    """Records what a callable receives: input range and autocast state."""

    def __init__(self, fn):
        self.fn, self.calls = fn, []

    def __call__(self, x, *args, **kwargs):
        self.calls.append(
            {
                "min": float(x.min()),
                "max": float(x.max()),
                "autocast": torch.is_autocast_enabled("cpu"),
                "dtype": torch.get_autocast_dtype("cpu"),
            }
        )
        return self.fn(x, *args, **kwargs)


def _spied_run(dataset, protocol: str, seed: int = 0, max_clips: int | None = None):
    model, nets = tiny_model(), cheap_networks(lpips=True)
    encode, lpips = Spy(model.encode), Spy(nets.lpips.forward)
    model.encode, nets.lpips.forward = encode, lpips
    result = evaluate(
        model,
        dataset,
        EvalOptions(
            protocol=protocol, progress=False, seed=seed, max_clips=max_clips, reference_fvd_batch=2, batch_size=2
        ),
        nets,
    )
    return result, encode.calls, lpips.calls


def test_reference_protocol_differs_from_standard_in_the_documented_ways(dataset):
    std, std_encode, std_lpips = _spied_run(dataset, "standard")
    ref, ref_encode, ref_lpips = _spied_run(dataset, "reference")
    # model input: [-1, 1] in fp32 vs [0, 1] under bf16 autocast
    assert min(c["min"] for c in std_encode) < -0.5 and not any(c["autocast"] for c in std_encode)
    assert min(c["min"] for c in ref_encode) >= 0.0 and max(c["max"] for c in ref_encode) <= 1.0
    assert all(c["autocast"] and c["dtype"] == torch.bfloat16 for c in ref_encode)
    # LPIPS: [-1, 1] vs the [0, 1] frames passed without normalisation
    assert min(c["min"] for c in std_lpips) < -0.5
    assert min(c["min"] for c in ref_lpips) >= 0.0 and max(c["max"] for c in ref_lpips) <= 1.0
    # rFVD: dataset-level vs the mean of per-batch FVDs, with the dataset-level value beside it
    assert std.metric_sets["vs_input"]["rfvd"]["kind"] == "dataset-level"
    rfvd = ref.metric_sets["vs_input"]["rfvd"]
    assert "per-batch" in rfvd["kind"] and rfvd["value"] != pytest.approx(rfvd["dataset_level"], rel=1e-3)
    assert ref.to_dict()["protocol"]["name"] == "reference" and "bf16" in ref.to_dict()["protocol"]["precision"]
    # the posterior is sampled: reproducible for a seed, different for another
    again, _, _ = _spied_run(dataset, "reference", max_clips=2)
    other, _, _ = _spied_run(dataset, "reference", seed=1, max_clips=2)
    psnrs = lambda res: [r.metrics["vs_input"]["psnr"] for r in res.records]  # noqa: E731
    assert psnrs(again) == psnrs(ref)[:2] and all(a != b for a, b in zip(psnrs(other), psnrs(ref)))


# ------------------------------------------------------------------ degradation


def test_degraded_inputs_are_scored_against_degraded_and_clean_clips(dataset, monkeypatch):
    qp = 36
    result = evaluate(
        identity(tiny_model(), monkeypatch), dataset, EvalOptions(progress=False, degrade_qp=qp), cheap_networks()
    )
    assert list(result.metric_sets) == ["vs_degraded", "vs_clean"]
    for rec in result.records:
        assert rec.metrics["vs_degraded"]["psnr"] == PSNR_CAP_DB  # the identity returns its (degraded) input
        clean = decode_all(Path(rec.path))[:FRAMES]
        expected = numpy_psnr(clean / 255.0, degrade_frames(clean, qp=qp).numpy() / 255.0)
        assert rec.metrics["vs_clean"]["psnr"] == pytest.approx(expected, abs=1e-6)
        assert rec.metrics["vs_clean"]["psnr"] < 45
    assert result.metric_sets["vs_degraded"]["rfvd"]["value"] < 1e-9
    assert result.metric_sets["vs_clean"]["rfvd"]["value"] > 1e-6


# ------------------------------------------------------------------ mask override


def test_compression_override_shares_the_backbone_and_masks_the_latent():
    plain = tiny_model()
    wrapped = with_compression(plain, "keep25")
    assert wrapped.backbone is plain.backbone and wrapped.config.compression.mask == "keep25"
    assert wrapped.frame_rule.frame_step == 32 and not wrapped.training
    x = torch.rand(1, 3, 33, 16, 16) * 2 - 1
    with torch.no_grad():
        z = plain.encode(x).mode()  # (1, 8, 9, 2, 2): the image frame, then one group of 8
        coeffs = multi_wt_reference(z[:, :, 1:])
        keep = torch.zeros(coeffs.shape[1])
        keep[block_mask(8, (0, 1))] = 1
        z_hat = torch.cat([z[:, :, :1], multi_iwt_reference(coeffs * keep.view(1, -1, 1, 1, 1))], dim=2)
        expected = plain.backbone.decode(z_hat)
        assert torch.allclose(wrapped.reconstruct(x), expected, atol=1e-5)
        assert not torch.allclose(plain.reconstruct(x), expected, atol=1e-3)


def test_compression_override_applies_the_compressed_frame_rule(clips):
    wrapped = with_compression(tiny_model(), "paper")
    with pytest.raises(ValueError, match=r"1 \+ 32k frames.*use 1 or 33"):
        evaluate(wrapped, open_dataset(clips, frames=FRAMES, size=SIZE), EvalOptions(progress=False), cheap_networks())
    result = evaluate(wrapped, open_dataset(clips, frames=33, size=SIZE), EvalOptions(progress=False), cheap_networks())
    assert result.clips_used == 4 and result.clips_skipped == 2


# ------------------------------------------------------------------ missing weights, labels, CLI


def test_missing_weights_are_reported_as_skipped_naming_the_command_line_options(dataset, monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-hub"))
    nets = load_networks("alex")
    assert nets.lpips is None and "alexnet-owt-7be5be79.pth" in nets.lpips_skipped
    assert "--lpips-backbone PATH" in nets.lpips_skipped and "--lpips st-alex" in nets.lpips_skipped
    assert "backbone_path=" not in nets.lpips_skipped
    missing = load_networks("vgg", lpips_backbone=str(tmp_path / "nope.pth")).lpips_skipped
    assert f"--lpips-backbone {tmp_path / 'nope.pth'} does not exist" in missing and "VGG16" in missing
    assert nets.extractor is None and "i3d_torchscript.pt" in nets.fvd_skipped
    result = evaluate(tiny_model(), dataset, EvalOptions(progress=False), nets)
    entry = result.metric_sets["vs_input"]
    assert entry["lpips"] == {"skipped": nets.lpips_skipped} and entry["rfvd"] == {"skipped": nets.fvd_skipped}
    assert entry["psnr"]["n"] == 4
    table = format_table(result)
    assert "| LPIPS ↓ | skipped [1] |" in table and nets.lpips_skipped in table and nets.fvd_skipped in table


def test_random_i3d_is_seeded_and_labelled_wherever_its_number_appears(dataset):
    state = torch.get_rng_state()
    a, b = random_i3d(), random_i3d()
    assert torch.equal(torch.get_rng_state(), state)  # the caller's RNG is untouched
    assert all(torch.equal(v, b.model.state_dict()[k]) for k, v in a.model.state_dict().items())
    nets = load_networks("none", i3d_random=True)
    assert nets.extractor.name == "i3d-random-weights" and "random weights" in nets.fvd_note
    nets.extractor = PooledFeatures()  # keep the label, skip I3D's cost
    result = evaluate(tiny_model(), dataset, EvalOptions(progress=False), nets)
    assert result.metric_sets["vs_input"]["rfvd"]["note"] == nets.fvd_note
    assert f"note: {nets.fvd_note}" in format_table(result)


def test_cli_eval_writes_report_samples_and_skips_what_has_no_weights(clips, checkpoint, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-hub"))
    i3d = tmp_path / "i3d.safetensors"
    save_file({k: v.contiguous() for k, v in random_i3d().model.state_dict().items()}, str(i3d))
    out = tmp_path / "eval"
    assert (
        main(
            [
                "eval",
                "--model",
                str(checkpoint),
                "--data",
                str(clips),
                "--frames",
                str(FRAMES),
                "--size",
                str(SIZE),
                "--lpips",
                "st-alex",
                "--i3d",
                str(i3d),
                "--max-clips",
                "3",
                "--samples",
                "1",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["clips"]["used"] == 2 and saved["clips"]["skipped"] == 1  # clips 0, 1 and the corrupt one
    entry = saved["metrics"]["vs_input"]
    assert entry["lpips"]["name"] == "ST-LPIPS (alex)" and entry["lpips"]["n"] == 2
    assert entry["rfvd"]["extractor"] == "i3d-pytorch" and entry["rfvd"]["value"] > 0
    assert saved["model"]["source"] == str(checkpoint) and saved["data"]["frames"] == FRAMES
    assert "| ST-LPIPS (alex) ↓ |" in capsys.readouterr().out
    video = probe(out / "samples" / "clip00000.mp4")
    assert (video.frames, video.width, video.height) == (FRAMES, 2 * SIZE, SIZE)  # input | reconstruction
    assert not (out / "samples" / "clip00001.mp4").exists()
    grid = decode_all(out / "samples" / "clip00000.png")[0]
    assert grid.shape == (3 * SIZE, 8 * SIZE, 3)  # input, reconstruction, error rows; 8 frames
    # missing weights with a mask override: skipped entries, the compressed frame rule, recorded override
    out2 = tmp_path / "eval2"
    assert (
        main(
            [
                "eval",
                "--model",
                str(checkpoint),
                "--data",
                str(clips),
                "--frames",
                "33",
                "--size",
                str(SIZE),
                "--compress",
                "keep25",
                "--samples",
                "0",
                "--out",
                str(out2),
                "--no-progress",
            ]
        )
        == 0
    )
    saved = json.loads((out2 / "metrics.json").read_text())
    assert "--lpips-backbone PATH" in saved["metrics"]["vs_input"]["lpips"]["skipped"]
    assert "I3D" in saved["metrics"]["vs_input"]["rfvd"]["skipped"]
    assert (
        saved["model"]["compress_override"] == "keep25" and saved["model"]["config"]["compression"]["mask"] == "keep25"
    )
    assert "lpips" not in json.loads((out2 / "per_clip.jsonl").read_text().splitlines()[0])["vs_input"]
    assert main(["eval", "--model", str(checkpoint), "--data", str(clips), "--frames", "10", "--out", str(out2)]) == 2
    assert "1 + 4k frames" in capsys.readouterr().err


def test_cli_eval_default_clips_are_33_frames_at_the_stored_size_and_recorded(clips, checkpoint, tmp_path, capsys):
    out = tmp_path / "eval"
    assert (
        main(
            [
                "eval",
                "--model",
                str(checkpoint),
                "--data",
                str(clips),
                "--max-clips",
                "1",
                "--samples",
                "0",
                "--lpips",
                "none",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    assert "eval clips: 33 frames from frame 0, stride 1; stored size (no resize or crop)" in capsys.readouterr().err
    data = json.loads((out / "metrics.json").read_text())["data"]
    assert data["frames"] == 33 and data["size"] is None and data["frame_sizes"] == [f"{SIZE}x{SIZE}"]
    record = json.loads((out / "per_clip.jsonl").read_text().splitlines()[0])
    assert (record["height"], record["width"]) == (SIZE, SIZE)
    # the default does not depend on the model: a non-causal model must be given its count
    non_causal = LCVAEConfig(
        backbone=WFVAEConfig(
            base_channels=8, encoder_energy_flow=8, decoder_energy_flow=8, latent_channels=8, causal=False
        )
    )
    assert eval_frames(non_causal, 16) == 16
    with pytest.raises(ValueError, match="pass --frames 32"):
        eval_frames(non_causal, None)


def test_cli_eval_pad_scores_any_length_on_the_padded_reconstruction_cropped_back(clips, checkpoint, tmp_path, capsys):
    out = tmp_path / "eval"
    args = ["eval", "--model", str(checkpoint), "--data", str(clips), "--frames", "10", "--max-clips", "1"]
    args += ["--samples", "0", "--lpips", "none", "--out", str(out), "--no-progress"]
    assert main(args) == 2
    assert "--pad" in capsys.readouterr().err  # 10 frames is not 1 + 4k
    assert main([*args, "--pad"]) == 0
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["data"]["frames"] == 10 and "padded for the model" in saved["data"]["clips"]
    # by hand: the first 10 frames, the last one repeated 3 times (13 = 1 + 4*3), reconstructed, cut to 10
    x = to_tensor(read_video(clips / GOOD[0], 0, 10)).unsqueeze(0)
    padded = torch.cat([x, x[:, :, -1:].expand(-1, -1, 3, -1, -1)], dim=2)
    with torch.no_grad():
        y = from_pretrained(checkpoint).eval().reconstruct(padded)[:, :, :10].clamp(-1, 1)
    record = json.loads((out / "per_clip.jsonl").read_text().splitlines()[0])
    assert record["vs_input"]["psnr"] == pytest.approx(psnr(x, y).item(), abs=1e-4)


def test_cli_eval_exits_1_listing_the_reasons_when_every_clip_is_skipped(clips, checkpoint, tmp_path, capsys):
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in ("bad.mp4", "short.mp4"):
        (bad / name).write_bytes((clips / name).read_bytes())
    assert (
        main(
            [
                "eval",
                "--model",
                str(checkpoint),
                "--data",
                str(bad),
                "--lpips",
                "none",
                "--samples",
                "0",
                "--out",
                str(tmp_path / "eval"),
                "--no-progress",
            ]
        )
        == 1
    )
    err = capsys.readouterr().err
    assert "no clips evaluated: every input was skipped (2)" in err
    assert f"{bad / 'bad.mp4'}: " in err and f"{bad / 'short.mp4'}: " in err and "has 5 frames" in err


def test_settings_that_cannot_work_are_refused_before_the_first_clip(clips, dataset):
    with pytest.raises(ValueError, match="protocol must be one of"):
        EvalOptions(protocol="paper")
    with pytest.raises(ValueError, match=r"QP in \[0, 51\]"):
        EvalOptions(degrade_qp=60)
    model = tiny_model()
    with pytest.raises(ValueError, match="model.eval()"):
        evaluate(model.train(), dataset, EvalOptions(progress=False), cheap_networks())
    unsized = open_dataset(clips, frames=FRAMES, size=None, multiple=8)
    with pytest.raises(ValueError, match="batch size 1"):
        evaluate(model.eval(), unsized, EvalOptions(progress=False, batch_size=2), cheap_networks())


@pytest.mark.parametrize(
    "causal, compressed, frames", [(True, True, 33), (False, True, 32), (True, False, 17), (False, False, 16)]
)
def test_default_frames_is_the_shortest_valid_clip_of_at_least_16(causal, compressed, frames):
    compression = CompressionConfig() if compressed else None
    config = LCVAEConfig(backbone=WFVAEConfig(latent_channels=8, causal=causal), compression=compression)
    assert default_frames(config) == frames
    config.frame_rule.check_frames(frames)  # valid for the model
    assert frames - config.frame_rule.frame_step < 16  # and the next shorter valid count is below 16
