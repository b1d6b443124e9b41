"""Bad input to the lcvae command: one line naming the problem, exit code 2, no traceback; real
bugs keep their traceback; --debug / LCVAE_DEBUG show it for input errors too; an output path
that cannot be written is refused before any model is loaded."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import lcvae.inference
from lcvae.cli import main
from lcvae.data.video import write_video
from lcvae.models.io import save_pretrained
from lcvae.models.lcvae import LCVAE
from lcvae.models.presets import get_preset


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    (d / "notes.txt").write_text("not a latent\n")
    (d / "empty.safetensors").write_bytes(b"")
    torch.manual_seed(0)
    save_pretrained(LCVAE(get_preset("lcvae-tiny")), d / "ckpt")
    save_file({"latent": torch.zeros(4, 2)}, str(d / "flat.safetensors"))
    write_video(d / "clip.mp4", np.zeros((5, 32, 32, 3), np.uint8), 10)
    (d / "dup.yaml").write_text("train:\n  max_steps: 10\n  max_steps: 20\n")
    (d / "bad.yaml").write_text("train:\n  max_steps: [1, 2\nmodel: x\n")
    return d


def run_cli(capsys, *argv: str) -> tuple[int, str]:
    rc = main(list(argv))
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return rc, err.strip()


@pytest.mark.parametrize(
    "name,expect",
    [
        ("notes.txt", r"notes\.txt is not a safetensors file .*written by `lcvae encode`"),
        ("empty.safetensors", r"empty\.safetensors is empty"),
        ("ckpt/model.safetensors", r"model\.safetensors holds \d+ model weights .* and no 'latent' tensor"),
        ("flat.safetensors", r"'latent' has shape \(4, 2\); expected \(1, C, F, h, w\)"),
        ("missing.safetensors", r"latent file not found: .*missing\.safetensors"),
    ],
)
def test_decode_of_a_non_latent_is_one_line(files, capsys, name, expect):
    rc, err = run_cli(capsys, "decode", str(files / name), str(files / "o.mp4"), "--model", str(files / "ckpt"))
    assert rc == 2 and len(err.splitlines()) == 1
    assert err.startswith("lcvae decode: error: ")
    assert re.search(expect, err), err


def test_info_of_a_weights_file_names_its_folder(files, capsys):
    rc, err = run_cli(capsys, "info", str(files / "ckpt" / "model.safetensors"))
    assert rc == 2 and f"give the checkpoint folder that holds it and its config.json (e.g. {files / 'ckpt'})" in err


@pytest.mark.parametrize(
    "name,expect",
    [
        ("dup.yaml", "dup.yaml:3: invalid YAML: duplicate key 'max_steps' (first set on line 2)"),
        ("bad.yaml", "bad.yaml:3: invalid YAML: while parsing a flow sequence (from line 2)"),
    ],
)
def test_yaml_errors_name_file_and_line(files, capsys, name, expect):
    rc, err = run_cli(capsys, "train-vae", "--config", str(files / name))
    assert rc == 2 and expect in err and len(err.splitlines()) == 1


@pytest.mark.parametrize(
    "argv,expect",
    [
        (["reconstruct", "{d}/clip.mp4", "{d}/out.xyz"], "unknown or unsupported extension '.xyz'; use one of .mp4"),
        (["reconstruct", "{d}/clip.mp4", "{d}/out.webm"], "extension '.webm'"),
        (["decode", "{d}/flat.safetensors", "{d}/out"], "extension '(none)'"),
        (["encode", "{d}/clip.mp4", "{d}/z.pt"], "latent files are safetensors; name it *.safetensors"),
    ],
)
def test_unwritable_output_is_refused_before_the_model_loads(files, capsys, monkeypatch, argv, expect):
    def no_model(*a, **k):
        raise AssertionError("the model was loaded before the output path was checked")

    monkeypatch.setattr(lcvae.inference, "load_model", no_model)
    if argv[0] == "decode":  # a valid latent, so only the output is wrong
        save_file({"latent": torch.zeros(1, 4, 2, 4, 4)}, str(files / "flat.safetensors"))
    rc, err = run_cli(capsys, *[a.format(d=files) for a in argv], "--model", "lcvae-tiny", "--random-weights")
    assert rc == 2 and expect in err


def test_debug_flag_and_env_show_the_traceback(files, capsys, monkeypatch):
    argv = ["decode", str(files / "notes.txt"), str(files / "o.mp4"), "--model", str(files / "ckpt")]
    with pytest.raises(ValueError, match="not a safetensors file"):
        main(["--debug", *argv])
    monkeypatch.setenv("LCVAE_DEBUG", "1")
    with pytest.raises(ValueError, match="not a safetensors file"):
        main(argv)
    monkeypatch.setenv("LCVAE_DEBUG", "0")
    assert main(argv) == 2


def test_a_bug_keeps_its_traceback(files):
    # A TypeError inside a command is not the user's mistake: it must surface with its traceback.
    code = (
        "import lcvae.commands.info as m, lcvae.cli as c\n"
        "def boom(args): raise TypeError('internal bug')\n"
        "m.run = boom\n"
        "raise SystemExit(c.main(['info', 'lcvae-tiny']))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 1 and "Traceback" in proc.stderr and "TypeError: internal bug" in proc.stderr
