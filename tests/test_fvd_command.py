"""lcvae fvd: folder-to-folder FVD with a random-weight I3D saved by the test; counts and errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import save_file

from _video_fixtures import flat_frames, textured_frames, write_av
from lcvae.cli import main
from lcvae.evaluation import random_i3d

FRAMES = 9  # I3D's minimum, to keep the test cheap (FVD16 uses 16)


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("fvd")
    real, same, other = root / "real", root / "same", root / "other"
    real.mkdir()
    write_av(real / "r0.mp4", textured_frames(12, 40, 48, seed=0))  # not 224: the command resizes
    (real / "nested").mkdir()
    write_av(real / "nested" / "r1.mp4", textured_frames(12, 40, 48, seed=1))
    shutil.copytree(real, same)
    other.mkdir()
    write_av(other / "f0.mp4", flat_frames(12, 40, 48))
    write_av(other / "f1.mp4", np.ascontiguousarray(textured_frames(12, 40, 48, seed=2)[:, ::-1]))
    write_av(other / "short.mp4", textured_frames(4, 40, 48, seed=3))
    (other / "broken.mp4").write_bytes(b"not a video" * 50)
    return {"real": real, "same": same, "other": other}


@pytest.fixture(scope="module")
def i3d_weights(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("i3d") / "rgb_random.safetensors"
    save_file({k: v.contiguous() for k, v in random_i3d().model.state_dict().items()}, str(path))
    return path


def run_fvd(capsys, *args: str) -> dict:
    assert main(["fvd", *args, "--no-progress"]) == 0
    return json.loads(capsys.readouterr().out)


def test_identical_folders_give_zero_and_different_folders_a_positive_fvd(folders, i3d_weights, tmp_path, capsys):
    same = run_fvd(
        capsys, str(folders["real"]), str(folders["same"]), "--frames", str(FRAMES), "--i3d", str(i3d_weights)
    )
    assert abs(same["fvd"]) < 1e-6
    assert same["real"]["used"] == same["fake"]["used"] == 2 and same["fake"]["skipped"] == 0
    assert same["kind"] == "dataset-level" and same["frames"] == FRAMES and same["extractor"] == "i3d-pytorch"
    out = tmp_path / "fvd.json"
    diff = run_fvd(
        capsys,
        str(folders["real"]),
        str(folders["other"]),
        "--frames",
        str(FRAMES),
        "--i3d",
        str(i3d_weights),
        "--output",
        str(out),
    )
    assert diff["fvd"] > 1e-3
    assert json.loads(out.read_text()) == diff
    assert diff["fake"]["used"] == 2 and diff["fake"]["skipped"] == 2  # skipped and counted, not replaced
    reasons = {Path(s["path"]).name: s["reason"] for s in diff["fake"]["skipped_reasons"]}
    assert set(reasons) == {"short.mp4", "broken.mp4"} and "4 frames" in reasons["short.mp4"]


def test_missing_i3d_weights_and_bad_arguments_are_errors_that_say_what_to_do(folders, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-hub"))
    assert main(["fvd", str(folders["real"]), str(folders["same"]), "--no-progress"]) == 2
    assert "i3d_torchscript.pt" in capsys.readouterr().err
    assert main(["fvd", str(folders["real"]), str(folders["same"]), "--frames", "8", "--i3d-random"]) == 2
    assert "at least 9 frames" in capsys.readouterr().err
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    write_av(lonely / "x.mp4", textured_frames(12, 40, 48, seed=5))
    assert (
        main(["fvd", str(lonely), str(folders["real"]), "--frames", str(FRAMES), "--i3d-random", "--no-progress"]) == 2
    )
    assert "at least 2 usable videos" in capsys.readouterr().err
