"""Gather finished pretraining studies into the folder the demo ships (``pretrained/quickstart/``).

    python scripts/ship_pretrained.py outputs/pretrain outputs/pretrain2 outputs/pretrain3 pretrained/quickstart
    python scripts/ship_pretrained.py --unpack pretrained/quickstart   # to add a stage to what is shipped

Each STAGE folder holds one finished ``lcvae study`` per model, ``STAGE/<model>/``, and optionally its
console log ``STAGE/<model>.log`` (made by the commands of ``STAGES`` below, written out in the
shipped README). Stages are given in training order: the first trains
from random weights, every later one must have started from the models the stage before exported
(its ``pretrained`` folder; checked here). The models shipped are those of the last stage. For each
model this writes ``DEST/<model>/``:

    config.json, model.safetensors   the model folder the last stage exported (loads with lcvae.from_pretrained)
    heldout.json                     held-out numbers of exactly these weights, evaluated in fp32 on the CPU,
                                     the file's sha256, the steps of every stage and how the numbers were
                                     measured (tests/test_pretrained.py checks that the file reproduces them)
    training/stage<k>/               per stage: the study's recipe.json and results.json (curves), the
                                     run's train-vae config.json and metrics.jsonl, and the console log

and ``DEST/README.md`` (the commands, the recipe and the table) with ``DEST/curves.png`` (the held-out
learning curves of the three trainings, stages joined on one step axis).

``--unpack DEST`` does the reverse for a new stage: it puts back, in the stage folders of ``STAGES``,
the files of every shipped stage that shipping reads, and the shipped models as the last stage's
export, so that a new stage can start from them (``pretrained=<last stage>/<model>/models``) and
all stages can be shipped again without the original runs.
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
# (config, output folder) of each stage, in training order; stage k > 1 starts from stage k - 1's models
STAGES = [
    ("configs/pretrain_quickstart.yaml", "outputs/pretrain"),
    ("configs/pretrain_quickstart_stage2.yaml", "outputs/pretrain2"),
    ("configs/pretrain_quickstart_stage3.yaml", "outputs/pretrain3"),
    ("configs/pretrain_quickstart_stage4.yaml", "outputs/pretrain4"),
]


def command() -> str:
    """The shell commands that make the shipped folder (one study per model and stage, side by side)."""
    lines = ["mkdir -p " + " ".join(out for _, out in STAGES)]
    for k, (config, out) in enumerate(STAGES):
        start = f" \\\n      pretrained={STAGES[k - 1][1]}/$m/models" if k else ""
        lines += [
            f"for m in wfvae lcvae ptlc; do   # stage {k + 1}",
            f'  OMP_NUM_THREADS=1 lcvae study --config {config} "models=[$m]"{start} --out {out}/$m \\',
            f"      > {out}/$m.log 2>&1 &",
            "done; wait",
        ]
    lines.append(f"python scripts/ship_pretrained.py {' '.join(out for _, out in STAGES)} pretrained/quickstart")
    return "\n".join(lines)


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


Study = tuple[dict, StudyConfig]  # a finished study's results.json and its config


def load_studies(stages: list[Path], name: str) -> list[Study]:
    """The study of model ``name`` in every stage, read once."""
    studies = []
    for stage in stages:
        results = json.loads((stage / name / "results.json").read_text())
        cfg = from_dict(StudyConfig, results["config"])
        if list(cfg.models) != [name]:
            raise SystemExit(f"{stage / name} is a study of {cfg.models}; expected one study per model ([{name}])")
        studies.append((results, cfg))
    return studies


def check_chain(stages: list[Path], studies: list[Study], name: str) -> None:
    """Stage 1 starts from random weights; stage k + 1 from the models stage k exported."""
    for k, (stage, (_, cfg)) in enumerate(zip(stages, studies)):
        if k == 0 and cfg.pretrained is not None:
            raise SystemExit(f"{stage / name} started from {cfg.pretrained}; the first stage must train from scratch")
        if k > 0 and (
            cfg.pretrained is None or Path(cfg.pretrained).resolve() != (stages[k - 1] / name / "models").resolve()
        ):
            raise SystemExit(
                f"{stage / name} started from {cfg.pretrained}, not from the stage before ({stages[k - 1] / name / 'models'})"
            )


def copy_training(stage: Path, cfg: StudyConfig, name: str, out: Path) -> None:
    """The study's recipe, results (curves), the run's train-vae config and step log, and the console log."""
    out.mkdir(parents=True)
    run = stage / name / "runs" / f"seed{cfg.seeds[0]}" / MODELS[name].run
    shutil.copy2(run / "config.json", out / "train_config.json")
    shutil.copy2(run / "metrics.jsonl", out / "metrics.jsonl")
    shutil.copy2(stage / name / "recipe.json", out / "recipe.json")
    shutil.copy2(stage / name / "results.json", out / "study_results.json")
    if (stage / f"{name}.log").is_file():  # the machine's checkout path is written as <repo>
        log = (stage / f"{name}.log").read_text(encoding="utf-8")
        write_text(out / "console.log", log.replace(str(REPO) + "/", "<repo>/"))


def ship(stages: list[Path], studies: list[Study], dest: Path, name: str) -> dict:
    check_chain(stages, studies, name)
    results, cfg = studies[-1]
    out = dest / name
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for file in ("config.json", "model.safetensors"):
        shutil.copy2(stages[-1] / name / "models" / name / file, out / file)
    for k, (stage, (_, stage_cfg)) in enumerate(zip(stages, studies), 1):
        copy_training(stage, stage_cfg, name, out / "training" / f"stage{k}")
    scores = heldout_numbers(cfg, out)
    record = {
        "model": name,
        "label": MODELS[name].label,
        "steps": sum(c.steps for _, c in studies),
        "stages": [
            {"steps": c.steps, "seed": c.seeds[0], "log": f"training/stage{k}/"} for k, (_, c) in enumerate(studies, 1)
        ],
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


def joined_curve(studies: list[Study], name: str) -> dict[str, list[float]]:
    """The held-out curve over all stages on one step axis (a later stage's step-0 evaluation, the
    model the stage before ended with, is not repeated)."""
    joined: dict[str, list[float]] = {"steps": [], "psnr": [], "ssim": []}
    offset = 0
    for results, cfg in studies:
        curve = results["curves"][name]
        for i, step in enumerate(curve["steps"]):
            if joined["steps"] and offset + step <= joined["steps"][-1]:
                continue
            joined["steps"].append(offset + step)
            for key in ("psnr", "ssim"):
                joined[key].append(curve[key][i])
        offset += cfg.steps
    return joined


def schedule(optim: dict) -> str:
    """The learning-rate schedule of a stage, in words."""
    lr = f"{optim['lr']:g}"
    words = [f"{optim['warmup_steps']}-step warm-up to {lr}" if optim["warmup_steps"] else lr]
    if optim["decay_steps"]:
        start = optim["decay_start"]
        words.append(f"linearly to 0 over steps {start}-{start + optim['decay_steps']}")
    else:
        words.append("constant")
    return ", ".join(words)


def stage_rows(stages: list[Path], studies: list[Study]) -> str:
    rows = []
    for k, (stage, (results, cfg)) in enumerate(zip(stages, studies)):
        train = results["config"]["train"]
        config = STAGES[k][0] if k < len(STAGES) else str(stage)
        start = "random weights" if k == 0 else f"stage {k}"
        data = train["data"]
        crops = f"{data['crop']}x{data['crop']}"
        if data.get("train_short_sides"):
            crops += f", random scale (short side {'/'.join(map(str, data['train_short_sides']))})"
        crops += ", random flips" if data.get("hflip") else ""
        crops += ", random time reversal" if data.get("reverse") else ""
        crops += f"; half the windows from `{data['extra_train_root']}`" if data.get("extra_train_root") else ""
        rows.append(f"| {k + 1} | `{config}` | {start} | {cfg.steps} | {crops} | {schedule(train['optim'])} |")
    return "\n".join(rows)


def unpack(dest: Path, names: list[str]) -> None:
    """Recreate, under the stage folders of ``STAGES``, what shipping reads of each stage shipped in
    ``dest``, and the shipped weights as the export of the last shipped stage."""
    for name in names:
        record = json.loads((dest / name / "heldout.json").read_text())
        for k, stage in enumerate(record["stages"]):
            kept, study = dest / name / stage["log"], REPO / STAGES[k][1] / name
            if study.exists():
                raise SystemExit(f"{study} exists; move it away to unpack {dest}")
            run = study / "runs" / f"seed{stage['seed']}" / MODELS[name].run
            run.mkdir(parents=True)
            shutil.copy2(kept / "train_config.json", run / "config.json")
            shutil.copy2(kept / "metrics.jsonl", run / "metrics.jsonl")
            shutil.copy2(kept / "recipe.json", study / "recipe.json")
            shutil.copy2(kept / "study_results.json", study / "results.json")
            if (kept / "console.log").is_file():
                shutil.copy2(kept / "console.log", study.parent / f"{name}.log")
        export = study / "models" / name
        export.mkdir(parents=True)
        for file in ("config.json", "model.safetensors"):
            shutil.copy2(dest / name / file, export / file)
        if sha256(export / "model.safetensors") != record["sha256"]:
            raise SystemExit(
                f"{dest / name / 'model.safetensors'} is not the file {dest / name / 'heldout.json'} records"
            )
        print(f"{name}: {len(record['stages'])} stages unpacked; a new stage starts from {study / 'models'}")


def readme(records: list[dict], stages: list[Path], studies: list[Study]) -> str:
    metric = records[0]["metric"].lower()
    rows = "\n".join(
        f"| {r['label']} | `{r['model']}/` | {r['steps']} | {r['psnr']:.2f} | {r['ssim']:.4f} | {r[metric]:.4f} |"
        for r in records
    )
    return f"""# Pretrained tiny models of the demo

`./run.sh` (`lcvae quickstart`) starts from these folders: it evaluates them, fine-tunes each for
100 steps with two seeds and evaluates again. They were trained by this project with its own
`lcvae study`, one study per model and stage, every setting the same for the three models: the
recipe of `lcvae quickstart --from-scratch` (L1 + KL 1e-6, AdamW, batch 1, 33-frame crops, bf16
autocast, seed {records[0]["stages"][0]["seed"]}, the 0.999 EMA of the weights evaluated), in stages that each
start from the models of the stage before with a fresh optimiser:

| stage | config | starts from | steps | crops | learning rate |
|---|---|---|---|---|---|
{stage_rows(stages, studies)}

```bash
{command()}
```

To add a stage without the original runs, `python scripts/ship_pretrained.py --unpack pretrained/quickstart`
puts the shipped stages back in those folders (the shipped weights as the last stage's export); train
the new stage from them and ship all stages again.

![held-out PSNR and SSIM against steps](curves.png)

Held-out numbers of exactly these files (last 33 frames of bigbuckbunny, bikes and carphone at
64x64, fp32 on the CPU; `heldout.json`; `tests/test_pretrained.py` checks that the files reproduce
them):

| model | folder | steps | PSNR (dB) | SSIM | {metric.upper()} |
|---|---|---|---|---|---|
{rows}

Each folder holds `config.json` + `model.safetensors` (`lcvae.from_pretrained`), `heldout.json`
(numbers, sha256 of the weights, steps per stage, how they were measured) and `training/stage<k>/`
(per stage: the study's recipe and results with the learning curve, the run's train-vae config and
per-step log, the console log). PTLC's folder is the {2 * studies[-1][1].channels}-channel WF-VAE trained without compression
with the paper mask inserted afterwards; the demo fine-tunes that WF-VAE uncompressed and masks it
again. docs/results.md tells how the stages came about.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "paths", type=Path, nargs="*", metavar="STAGE... DEST", help="finished studies, one per stage, in order; DEST"
    )
    parser.add_argument("--models", default="wfvae,lcvae,ptlc")
    parser.add_argument("--unpack", type=Path, metavar="DEST", help="put a shipped folder's stages back (see above)")
    args = parser.parse_args()
    names = args.models.split(",")
    if args.unpack is not None:
        return unpack(args.unpack, names)
    if len(args.paths) < 2:
        parser.error("give the stage folders in training order and then DEST (or --unpack DEST)")
    *stages, dest = args.paths
    missing = [str(s / n) for s in stages for n in names if not (s / n / "results.json").is_file()]
    if missing:
        sys.exit(f"no finished study at {', '.join(missing)} (expected STAGE/<model>/results.json)")
    studies = {name: load_studies(stages, name) for name in names}
    records = [ship(stages, studies[name], dest, name) for name in names]
    write_text(dest / "README.md", readme(records, stages, studies[names[0]]))
    curves = {MODELS[name].label: joined_curve(studies[name], name) for name in names}
    starts, marks = 0, []
    for k, (_, cfg) in enumerate(studies[names[0]][:-1], 2):  # where each later stage begins
        starts += cfg.steps
        marks.append((starts, f"stage {k}"))
    heldout_curves(
        curves,
        dest / "curves.png",
        title="Pretraining of the demo's models (seed 0, EMA weights)",
        marks=marks,
        bar=24.0,
    )


if __name__ == "__main__":
    main()
