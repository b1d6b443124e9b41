"""Ablations: adaptive-selection statistics on a hand-made log, comparison tables from hand-made and
evaluation-written metrics.json files, and post-training compression against an independent model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lcvae.ablations.evaluations import common_frames, mask_sweep
from lcvae.ablations.selection import adaptive_report, read_selection_log, selection_summary
from lcvae.cli import main
from lcvae.comparison import compare_runs, format_markdown
from lcvae.data import read_video, to_tensor, write_video
from lcvae.masks import CompressionConfig, paper_mask
from lcvae.models.io import from_pretrained, save_pretrained
from lcvae.models.lcvae import LCVAE, LCVAEConfig
from lcvae.models.presets import get_preset

# ---------------------------------------------------------------- adaptive top-k (Fig. 12)

PAPER_C1 = list(range(12)) + [16, 17, 18, 19]  # C = 1: leaves 0, 1, 2 and 4, four channels each


def write_log(path, rows) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_selection_frequency_and_overlap_on_a_hand_made_log(tmp_path):
    assert paper_mask(1) == PAPER_C1
    swapped = PAPER_C1[:-1] + [20]  # 19 (HLL) traded for 20 (HLH)
    log = tmp_path / "adaptive_selection.jsonl"
    write_log(
        log,
        [  # out of step order on purpose: the reader sorts; other keys are ignored
            {"step": 200, "selection": swapped, "overlap_paper": 15 / 16, "loss": 0.1},
            {"step": 0, "selection": list(range(16))},
            {"step": 100, "selection": PAPER_C1, "overlap_paper": 1.0},
        ],
    )
    records = read_selection_log(tmp_path)
    assert [r["step"] for r in records] == [0, 100, 200]
    s = selection_summary(records, 1, from_step=100)
    assert s["against"] == "paper" and s["kept"] == 16
    assert s["overlap"] == [12 / 16, 1.0, 15 / 16]
    assert s["final_overlap"] == 15 / 16 and s["late_mean_overlap"] == pytest.approx((1 + 15 / 16) / 2)
    freq = s["frequency"]
    assert freq[0] == 1.0 and freq[12] == pytest.approx(1 / 3) and freq[19] == pytest.approx(1 / 3)
    assert freq[20] == pytest.approx(1 / 3) and freq[16] == pytest.approx(2 / 3) and freq[31] == 0.0
    late = s["late_frequency"]
    assert late[0] == 1.0 and late[19] == 0.5 and late[20] == 0.5 and late[12] == 0.0
    assert s["consensus"] == PAPER_C1 and s["consensus_overlap"] == 1.0  # ties resolve to the lower index
    assert s["late_leaf_share"]["HLL"] == pytest.approx((4 + 3) / 2 / 16)
    assert s["late_leaf_share"]["HLH"] == pytest.approx(0.5 / 16)
    assert s["late_leaf_share"]["LHH"] == 0.0
    default = selection_summary(records, 1)  # last quarter of 0..200: steps >= 150
    assert default["late_from_step"] == 150 and default["late_steps"] == 1


def test_selection_log_errors_name_the_problem(tmp_path):
    log = tmp_path / "log.jsonl"
    write_log(log, [{"step": 1, "selected": [0]}])
    with pytest.raises(ValueError, match="log.jsonl:1.*selection"):
        read_selection_log(log)
    with pytest.raises(FileNotFoundError, match="adaptive_selection.jsonl"):
        read_selection_log(tmp_path)
    with pytest.raises(ValueError, match="same number"):
        selection_summary([{"step": 0, "selection": list(range(16))}, {"step": 1, "selection": list(range(15))}], 1)
    with pytest.raises(ValueError, match="outside 0..31"):
        selection_summary([{"step": 0, "selection": list(range(20, 36))}], 1)
    with pytest.raises(ValueError, match="keeps 8 channels"):
        selection_summary([{"step": 0, "selection": list(range(16))}], 1, against="keep25")
    # A logged overlap that disagrees with the selection means the index layout or C is off.
    with pytest.raises(ValueError, match="overlap_paper 0.5 differs"):
        selection_summary([{"step": 0, "selection": paper_mask(2), "overlap_paper": 0.5}], 2)


def test_adaptive_report_reads_the_run_config_and_writes_json_and_figure(tmp_path):
    pytest.importorskip("matplotlib")
    from lcvae.config import to_dict
    from lcvae.train.vae_config import ModelSection, TrainVAEConfig

    rows = [{"step": 10 * k, "selection": paper_mask(8) if k % 2 else list(range(128))} for k in range(8)]
    write_log(tmp_path / "adaptive_selection.jsonl", rows)
    with pytest.raises(ValueError, match="latent_channels"):
        adaptive_report(tmp_path, tmp_path / "out")
    # The run folder's config.json, as the training recipe writes it: lcvae-tiny has C = 8.
    cfg = TrainVAEConfig(model=ModelSection(preset="lcvae-tiny", compression="adaptive"))
    (tmp_path / "config.json").write_text(json.dumps(to_dict(cfg)))
    s = adaptive_report(tmp_path, tmp_path / "out")
    on_disk = json.loads((tmp_path / "out" / "selection.json").read_text())
    assert on_disk["latent_channels"] == 8 and on_disk["overlap"] == [0.75, 1.0] * 4
    assert on_disk["figure"] == "selection.png" == s["figure"]
    blob = (tmp_path / "out" / "selection.png").read_bytes()
    assert blob[:4] == b"\x89PNG" and len(blob) > 20_000


# ---------------------------------------------------------------- comparison tables


def metrics_file(folder, config: LCVAEConfig, data: str, psnr: float, lpips: float | None, rfvd: float | None) -> None:
    lp = (
        {"name": "LPIPS (alex)", "mean": lpips, "std": 0.01} if lpips is not None else {"skipped": "no AlexNet weights"}
    )
    fvd = {"value": rfvd, "kind": "dataset-level"} if rfvd is not None else {"skipped": "no I3D weights"}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.json").write_text(
        json.dumps(
            {
                "model": {"source": "x", "config": config.to_dict()},
                "data": {"path": data},
                "metrics": {
                    "vs_input": {
                        "psnr": {"mean": psnr, "std": 1.0},
                        "ssim": {"mean": psnr / 40, "std": 0.1},
                        "lpips": lp,
                        "rfvd": fvd,
                    }
                },
            }
        )
    )


def test_compare_table_from_hand_made_metrics(tmp_path):
    lc, wf = get_preset("lcvae-chn8"), get_preset("wfvae-s-8")
    metrics_file(tmp_path / "lcvae" / "eval" / "webvid", lc, "/d/webvid", 33.78, 0.0485, 352.73)
    metrics_file(tmp_path / "lcvae" / "eval" / "openvid", lc, "/d/openvid.jsonl", 36.0, 0.04, None)
    metrics_file(tmp_path / "wfvae", wf, "/d/webvid", 31.96, None, 300.5)
    table = compare_runs([tmp_path / "lcvae", tmp_path / "wfvae"])
    assert table["datasets"] == ["openvid", "webvid"]  # files are found in sorted path order
    (lc_row, wf_row) = table["rows"]
    assert (lc_row["method"], lc_row["chn"], wf_row["method"], wf_row["chn"]) == ("lcvae", 8, "wfvae", 8)
    assert lc_row["cells"]["webvid"]["psnr"] == 33.78 and lc_row["cells"]["openvid"]["rfvd"] is None
    assert wf_row["cells"]["webvid"]["missing"] == {"lpips": "no AlexNet weights"}
    md = format_markdown(table).splitlines()
    assert md[0] == (
        "| Method | Chn | openvid PSNR ↑ | SSIM ↑ | LPIPS ↓ | rFVD ↓ | webvid PSNR ↑ | SSIM ↑ | LPIPS ↓ | rFVD ↓ |"
    )
    assert md[2] == "| lcvae | 8 | 36.00 | 0.9000 | 0.0400 | – | 33.78 | 0.8445 | 0.0485 | 352.73 |"
    assert md[3] == "| wfvae | 8 | – | – | – | – | 31.96 | 0.7990 | – | 300.50 |"
    named = compare_runs([tmp_path / "lcvae", tmp_path / "wfvae"], names=["LC-VAE (Ours)", "WF-VAE"])
    assert [r["method"] for r in named["rows"]] == ["LC-VAE (Ours)", "WF-VAE"]
    # Two results on one dataset inside a run: rows are told apart by their folders.
    # ST-LPIPS is labelled as such: a whole column, or a cell in a mixed column.
    st = json.loads((tmp_path / "wfvae" / "metrics.json").read_text())
    st["metrics"]["vs_input"]["lpips"] = {"name": "ST-LPIPS (alex)", "mean": 0.25}
    (tmp_path / "st" / "metrics.json").parent.mkdir()
    (tmp_path / "st" / "metrics.json").write_text(json.dumps(st))
    only_st = format_markdown(compare_runs([tmp_path / "st"])).splitlines()
    assert "webvid PSNR ↑ | SSIM ↑ | ST-LPIPS ↓" in only_st[0] and "| 0.2500 |" in only_st[2]
    mixed = format_markdown(compare_runs([tmp_path / "lcvae", tmp_path / "st"])).splitlines()
    assert "| LPIPS ↓ | rFVD ↓ | webvid PSNR" in mixed[0] and "0.0485 |" in mixed[2] and "0.2500 (ST)" in mixed[3]
    metrics_file(tmp_path / "sweep" / "none", wf, "/d/webvid", 30.0, None, None)
    metrics_file(tmp_path / "sweep" / "paper", wf, "/d/webvid", 29.0, None, None)
    assert [r["method"] for r in compare_runs([tmp_path / "sweep"])["rows"]] == ["sweep/none", "sweep/paper"]
    with pytest.raises(ValueError, match="two results"):
        compare_runs([tmp_path / "sweep"], names=["one"])
    with pytest.raises(ValueError, match="no metric set 'vs_clean'"):
        compare_runs([tmp_path / "wfvae"], metric_set="vs_clean")
    with pytest.raises(ValueError, match="one name per run"):
        compare_runs([tmp_path / "wfvae"], names=["a", "b"])
    assert main(["compare", str(tmp_path / "lcvae"), str(tmp_path / "wfvae"), "--out", str(tmp_path / "t")]) == 0
    assert json.loads((tmp_path / "t" / "table.json").read_text()) == json.loads(json.dumps(table))
    assert (tmp_path / "t" / "table.md").read_text().splitlines()[2] == md[2]


def test_compare_reads_what_the_evaluation_writes(tmp_path):
    from lcvae.evaluation import EvalResult, write_report

    sets = {
        "vs_input": {
            "psnr": {"mean": 31.5, "std": 1.0, "min": 30.0, "max": 33.0, "n": 2},
            "ssim": {"mean": 0.9, "std": 0.01, "min": 0.89, "max": 0.91, "n": 2},
            "lpips": {"skipped": "no weights"},
            "rfvd": {"value": 123.4, "kind": "dataset-level"},
        }
    }
    result = EvalResult("standard", sets, records=[], skipped=[])
    write_report(
        result,
        tmp_path / "run",
        {"model": {"config": get_preset("lcvae-tiny").to_dict()}, "data": {"path": "/data/ucf101"}},
    )
    row = compare_runs([tmp_path / "run"])["rows"][0]
    assert row["chn"] == 4 and row["cells"]["ucf101"]["psnr"] == 31.5 and row["cells"]["ucf101"]["rfvd"] == 123.4


# ---------------------------------------------------------------- evaluations


def test_common_frames_gives_one_clip_length_where_the_rules_allow():
    wf, lc, lc_nc = get_preset("wfvae-tiny"), get_preset("lcvae-tiny"), get_preset("lcvae-tiny-noncausal")
    assert common_frames([wf, lc]) == [33, 33]
    assert common_frames([wf]) == [17]
    assert common_frames([wf, lc_nc]) == [33, 32]  # causal and non-causal cannot share a length


def test_post_training_compression_equals_a_model_built_with_the_mask(tmp_path):
    torch.manual_seed(0)
    ckpt = save_pretrained(LCVAE(get_preset("wfvae-tiny")), tmp_path / "wfvae")
    rng = np.random.default_rng(0)
    frames = np.clip(rng.normal(128, 40, (33, 32, 32, 3)).cumsum(0) / 8 + 60, 0, 255).astype(np.uint8)
    clip = write_video(tmp_path / "clips" / "a.mp4", frames, fps=8, codec="libx264rgb", pix_fmt="rgb24", qp=0)
    from lcvae.evaluation import EvalOptions

    table = mask_sweep(
        str(ckpt),
        str(clip.parent),
        tmp_path / "out",
        ["none", "paper"],
        EvalOptions(lpips="none", samples=0, progress=False),
        size=32,
        name="tiny",
    )
    rows = {r["method"]: r for r in table["rows"]}
    assert set(rows) == {"tiny", "tiny + paper mask at inference"}
    assert rows["tiny"]["chn"] == 4 and rows["tiny + paper mask at inference"]["chn"] == 2
    # Independent: the same weights in an LC-VAE whose config carries the paper mask.
    plain = from_pretrained(ckpt)
    config = LCVAEConfig(backbone=plain.config.backbone, compression=CompressionConfig(mask="paper"))
    masked = LCVAE(config)
    masked.backbone.load_state_dict(plain.backbone.state_dict())
    x = to_tensor(read_video(clip)).unsqueeze(0)
    for model, name in ((plain.eval(), "tiny"), (masked.eval(), "tiny + paper mask at inference")):
        with torch.no_grad():
            y = model.reconstruct(x).clamp(-1, 1)
        a, b = (x.double() + 1) / 2, (y.double() + 1) / 2
        mse = (a - b).pow(2).mean(dim=(0, 1, 3, 4))  # per frame
        expected = float((-10 * torch.log10(mse)).mean())
        assert rows[name]["cells"]["clips"]["psnr"] == pytest.approx(expected, abs=1e-6)
    assert rows["tiny"]["cells"]["clips"]["psnr"] != rows["tiny + paper mask at inference"]["cells"]["clips"]["psnr"]
    assert (tmp_path / "out" / "paper" / "metrics.json").is_file() and (tmp_path / "out" / "table.md").is_file()
