from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest
import yaml

from lcvae.config import apply_overrides, from_dict, load_config, parse_overrides, to_dict


@dataclass(frozen=True)
class OptimConfig:
    learning_rate: float = 1e-5
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 1e-4


@dataclass(frozen=True)
class ModelConfig:
    channels: list[int] = field(default_factory=lambda: [64, 128])
    latent_channels: int = 16
    causal: bool = True
    norm: Literal["layer", "group"] = "layer"


@dataclass(frozen=True)
class RunConfig:
    name: str = "run"
    steps: int = 100
    resume: str | None = None
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)


@dataclass(frozen=True)
class NeedsPath:
    data_root: str


def _write(tmp_path, data) -> str:
    p = tmp_path / "cfg.yaml"
    p.write_text(yaml.safe_dump(data))
    return str(p)


def test_yaml_then_overrides_nested_and_later_wins(tmp_path):
    path = _write(tmp_path, {"steps": 7, "model": {"latent_channels": 8, "causal": False}})
    cfg = load_config(
        RunConfig,
        path,
        ["model.latent_channels=32", "optim.learning_rate=2e-5", "optim.betas=[0.5, 0.9]", "resume=ckpt/a"],
    )
    assert cfg.steps == 7
    assert cfg.model.latent_channels == 32  # override beats the file
    assert cfg.model.causal is False  # untouched file value survives the nested merge
    assert cfg.model.channels == [64, 128]  # default
    assert cfg.optim.learning_rate == 2e-5 and isinstance(cfg.optim.learning_rate, float)
    assert cfg.optim.betas == (0.5, 0.9)  # list converted to the annotated tuple
    assert cfg.resume == "ckpt/a"


def test_float_field_accepts_int_and_yaml11_scientific_string():
    # PyYAML parses "1e-5" (no dot) as a string; float fields convert it, int fields do not.
    assert parse_overrides(["x=1e-5"]) == {"x": "1e-5"}
    cfg = from_dict(OptimConfig, {"learning_rate": "1e-5", "weight_decay": 0})
    assert cfg.learning_rate == 1e-5 and cfg.weight_decay == 0.0
    with pytest.raises(ValueError, match="expects an int"):
        from_dict(RunConfig, {"steps": "1e3"})


def test_unknown_key_suggests_the_closest_at_its_level():
    with pytest.raises(
        ValueError, match=r"unknown config key 'optim.lerning_rate'; did you mean 'optim.learning_rate'\?"
    ):
        load_config(RunConfig, None, ["optim.lerning_rate=1e-4"])
    with pytest.raises(ValueError, match=r"unknown config key 'stesp'; did you mean 'steps'\?"):
        from_dict(RunConfig, {"stesp": 3})
    with pytest.raises(ValueError, match="known keys here"):
        from_dict(RunConfig, {"zzzzzz": 3})


@pytest.mark.parametrize(
    "override, message",
    [
        ("steps=ten", "'steps' expects an int, got str"),
        ("steps=true", "'steps' expects an int, got bool"),
        ("model.causal=1", "'model.causal' expects a bool"),
        ("name=123", "'name' expects a string, got int"),
        ("model.channels=64", "'model.channels' expects a list"),
        ("model.channels=[64, x]", r"'model.channels\[1\]' expects an int"),
        ("optim.betas=[0.9]", "expects exactly 2 items"),
        ("model.norm=batch", r"must be one of \['layer', 'group'\]"),
        ("model=3", "nested config .ModelConfig. and needs a mapping"),
        ("optim.learning_rate=fast", "'optim.learning_rate' expects a float"),
    ],
)
def test_type_errors_name_the_key_and_the_expected_type(override, message):
    with pytest.raises(ValueError, match=message):
        load_config(RunConfig, None, [override])


def test_optional_accepts_null_and_value():
    assert load_config(RunConfig, None, ["resume=null"]).resume is None
    assert load_config(RunConfig, None, ["resume='7'"]).resume == "7"


def test_malformed_override_and_missing_required_key(tmp_path):
    with pytest.raises(ValueError, match="key=value"):
        parse_overrides(["steps"])
    with pytest.raises(ValueError, match="key=value"):
        parse_overrides(["model..x=1"])
    with pytest.raises(ValueError, match="'data_root' is required"):
        from_dict(NeedsPath, {})
    bad = tmp_path / "list.yaml"
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="YAML mapping at the top level"):
        load_config(RunConfig, bad)


def test_to_dict_round_trips_through_yaml(tmp_path):
    cfg = load_config(RunConfig, None, ["model.norm=group", "optim.betas=[0.8, 0.95]", "steps=3"])
    plain = to_dict(cfg)
    assert plain["optim"]["betas"] == [0.8, 0.95]  # tuples become lists: YAML/JSON safe
    text = yaml.safe_dump(plain)
    back = load_config(RunConfig, _write(tmp_path, yaml.safe_load(text)))
    assert back == cfg


def test_apply_overrides_returns_a_new_validated_config():
    cfg = RunConfig()
    new = apply_overrides(cfg, ["model.latent_channels=4"])
    assert new.model.latent_channels == 4 and cfg.model.latent_channels == 16
    with pytest.raises(ValueError, match="did you mean 'model.latent_channels'"):
        apply_overrides(cfg, ["model.latent_chanels=4"])


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: run\nmodel:\n  channels: [1, 2\noptim:\n  learning_rate: 1.0\n")
    with pytest.raises(ValueError, match=r"bad\.yaml:4: invalid YAML: .*flow sequence \(from line 3\)") as e:
        load_config(RunConfig, path)
    assert e.value.__cause__ is None and e.value.__suppress_context__  # no PyYAML chain to print


def test_duplicate_yaml_keys_are_rejected_with_both_lines(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text("steps: 10\noptim:\n  learning_rate: 1.0\n  weight_decay: 0.1\n  learning_rate: 2.0\n")
    with pytest.raises(
        ValueError,
        match=r"dup\.yaml:5: invalid YAML: duplicate key 'learning_rate' "
        r"\(first set on line 3\)",
    ):
        load_config(RunConfig, path)
    top = tmp_path / "top.yaml"
    top.write_text("steps: 10\nname: a\nsteps: 20\n")
    with pytest.raises(ValueError, match=r"top\.yaml:3: .*duplicate key 'steps'"):
        load_config(RunConfig, top)
    # The same key in two different mappings is not a duplicate.
    ok = tmp_path / "ok.yaml"
    ok.write_text("name: a\nmodel:\n  latent_channels: 4\noptim:\n  weight_decay: 0.5\n")
    cfg = load_config(RunConfig, ok)
    assert cfg.model.latent_channels == 4 and cfg.optim.weight_decay == 0.5


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"config file not found: .*nope\.yaml"):
        load_config(RunConfig, tmp_path / "nope.yaml")
