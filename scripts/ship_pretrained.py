"""Gather finished pretraining studies into the folder the demo ships (``pretrained/quickstart/``).

    python scripts/ship_pretrained.py outputs/pretrain pretrained/quickstart

SRC holds one finished ``lcvae study`` per model, ``SRC/<model>/`` (made by the commands in
``configs/pretrain_quickstart.yaml``), and optionally its console log ``SRC/<model>.log``. For each
model this writes ``DEST/<model>/``:

    config.json, model.safetensors   the model folder the study exported (loads with lcvae.from_pretrained)
    heldout.json                     held-out numbers of exactly these weights, evaluated in fp32 on the CPU,
                                     the file's sha256 and how they were measured (tests/test_pretrained.py
                                     checks that the shipped file reproduces them)
    training/                        the study's recipe.json, results.json (curves), the run's train-vae
                                     config.json and metrics.jsonl, and the console log

and ``DEST/README.md`` (the command, the recipe and the table) with ``DEST/curves.png`` (the held-out
learning curves of the three trainings).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path

import torch

from lcvae.config import from_dict
from lcvae.models.io import from_pretrained
from lcvae.plots import heldout_curves
from lcvae.study.config import MODELS, StudyConfig
from lcvae.study.runner import heldout_clips
from lcvae.train.validation import evaluate_clips, load_metric_lpips
from lcvae.utils import write_json, write_text

REPO = Path(__file__).resolve().parents[1]
COMMAND = """for m in wfvae lcvae ptlc; do
  OMP_NUM_THREADS=1 lcvae study --config configs/pretrain_quickstart.yaml "models=[$m]" --out outputs/pretrain/$m \\
      > outputs/pretrain/$m.log 2>&1 &
done; wait
python scripts/ship_pretrained.py outputs/pretrain pretrained/quickstart"""


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def heldout_numbers(cfg: StudyConfig, folder: Path) -> dict:
    """Held-out PSNR/SSIM/ST-LPIPS of the model folder, fp32 on the CPU (the study's clips and metric)."""
    torch.manual_seed(0)
    clips = heldout_clips(cfg)
    model = from_pretrained(folder).eval()
    scores = evaluate_clips(model, [c["video"] for c in clips], load_metric_lpips(cfg.train.log.lpips_weights))
    scores["per_clip"] = [{"clip": c["path"], **s} for c, s in zip(clips, scores["per_clip"])]
    return scores


def ship(src: Path, dest: Path, name: str) -> dict:
    study = src / name
    results = json.loads((study / "results.json").read_text())
    cfg = from_dict(StudyConfig, results["config"])
    if list(cfg.models) != [name]:
        raise SystemExit(f"{study} is a study of {cfg.models}; expected one study per model ([{name}])")
    out = dest / name
    if out.exists():
        shutil.rmtree(out)
    (out / "training").mkdir(parents=True)
    for file in ("config.json", "model.safetensors"):
        shutil.copy2(study / "models" / name / file, out / file)
    run = study / "runs" / f"seed{cfg.seeds[0]}" / MODELS[name].run
    shutil.copy2(run / "config.json", out / "training" / "train_config.json")
    shutil.copy2(run / "metrics.jsonl", out / "training" / "metrics.jsonl")
    shutil.copy2(study / "recipe.json", out / "training" / "recipe.json")
    shutil.copy2(study / "results.json", out / "training" / "study_results.json")
    if (src / f"{name}.log").is_file():  # the machine's checkout path is written as <repo>
        log = (src / f"{name}.log").read_text(encoding="utf-8")
        write_text(out / "training" / "console.log", log.replace(str(REPO) + "/", "<repo>/"))
    scores = heldout_numbers(cfg, out)
    record = {
        "model": name,
        "label": MODELS[name].label,
        "steps": cfg.steps,
        "seed": cfg.seeds[0],
        "weights": cfg.eval_weights,
        "sha256": sha256(out / "model.safetensors"),
        "evaluation": {
            "device": "cpu",
            "dtype": "float32",
            "clips": [c["clip"] for c in scores["per_clip"]],
            "frames": cfg.train.data.heldout_frames,
            "size": cfg.train.data.val_crop,
        },
        "study_eval_at_last_step": {k: results["models"][name][k] for k in ("psnr", "ssim", results["metric"])},
        **{k: scores[k] for k in ("psnr", "ssim", results["metric"], "metric", "per_clip")},
    }
    write_json(out / "heldout.json", record)
    print(f"{name}: PSNR {scores['psnr']:.2f} dB, SSIM {scores['ssim']:.4f} ({out})")
    return record


def readme(records: list[dict]) -> str:
    metric = records[0]["metric"].lower()
    rows = "\n".join(
        f"| {r['label']} | `{r['model']}/` | {r['steps']} | {r['psnr']:.2f} | {r['ssim']:.4f} | {r[metric]:.4f} |"
        for r in records
    )
    return f"""# Pretrained tiny models of the demo

`./run.sh` (`lcvae quickstart`) starts from these folders: it evaluates them, fine-tunes each for
100 steps with two seeds and evaluates again. They were trained by this project with its own
`lcvae study`, one study per model (`configs/pretrain_quickstart.yaml`: the recipe of
`lcvae quickstart --from-scratch` for {records[0]["steps"]} steps, the learning rate decayed linearly to 0
over the last 1000, seed {records[0]["seed"]}, EMA weights):

```bash
{COMMAND}
```

![held-out PSNR and SSIM against steps](curves.png)

Held-out numbers of exactly these files (last 33 frames of bigbuckbunny, bikes and carphone at
64x64, fp32 on the CPU; `heldout.json`; `tests/test_pretrained.py` checks that the files reproduce
them):

| model | folder | steps | PSNR (dB) | SSIM | {metric.upper()} |
|---|---|---|---|---|---|
{rows}

Each folder holds `config.json` + `model.safetensors` (`lcvae.from_pretrained`), `heldout.json`
(numbers, sha256 of the weights, how they were measured) and `training/` (the study's recipe and
results with the learning curve, the run's train-vae config and per-step log, the console log).
PTLC's folder is the 8-channel WF-VAE trained without compression with the paper mask inserted
afterwards; the demo fine-tunes that WF-VAE uncompressed and masks it again.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", type=Path, help="folder of finished studies, one per model (outputs/pretrain)")
    parser.add_argument("dest", type=Path, help="where to ship them (pretrained/quickstart)")
    parser.add_argument("--models", default="wfvae,lcvae,ptlc")
    args = parser.parse_args()
    names = args.models.split(",")
    missing = [n for n in names if not (args.src / n / "results.json").is_file()]
    if missing:
        sys.exit(f"no finished study for {missing} under {args.src} (expected {args.src}/<model>/results.json)")
    records = [ship(args.src, args.dest, name) for name in names]
    write_text(args.dest / "README.md", readme(records))
    curves = {}
    for name in names:
        curve = json.loads((args.src / name / "results.json").read_text())["curves"][name]
        curves[MODELS[name].label] = {k: curve[k] for k in ("steps", "psnr", "ssim")}
    heldout_curves(curves, args.dest / "curves.png", title="Pretraining of the demo's models (seed 0, EMA weights)")


if __name__ == "__main__":
    main()
