"""Strict, typed configuration: a YAML file plus ``key=value`` overrides into a dataclass tree.

Any dataclass tree works; training recipes define their own config dataclasses. Loading is strict
on purpose: a misspelt key in a 200k-step run must fail at start-up, not be silently ignored.

    cfg = load_config(TrainConfig, "configs/tiny.yaml", ["optim.lr=2e-5", "model.channels=[64, 128]"])

Rules
- Keys are dataclass field names; nested dataclasses are nested mappings in YAML and dotted keys in
  overrides (``optim.lr=1e-4``). An unknown key is a ValueError naming the closest known key.
- The YAML file must parse and may not repeat a key within one mapping (PyYAML would keep the last
  silently); both are ValueErrors naming the file and line.
- Override values are parsed with ``yaml.safe_load`` (``true``, ``3``, ``[1, 2]``, ``null``, ``'7'``).
- Values are checked against the field's annotation: int, float, bool, str, list[X], tuple[X, ...],
  tuple[X, Y], dict[str, X], Optional[X], Literal[...], nested dataclasses and Any.
  ints are accepted for float fields; bools are never accepted as numbers. PyYAML follows YAML 1.1,
  where ``1e-5`` (no dot) is a *string*; for float fields a string in plain decimal or scientific
  notation is accepted and converted, everything else is a type error.
- ``to_dict`` gives the resolved config as plain dicts/lists (tuples become lists), ready for YAML or
  JSON next to a checkpoint (``lcvae.train.checkpoint.save_checkpoint`` writes it as config.yaml);
  loading that dict back gives an equal config.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import yaml

from lcvae.utils import closest

__all__ = ["load_config", "read_yaml", "from_dict", "apply_overrides", "parse_overrides", "to_dict"]

T = TypeVar("T")

_FLOAT_STRING = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def _unknown_key_error(prefix: str, key: str, fields: Sequence[str]) -> ValueError:
    full = f"{prefix}{key}"
    best = closest(key, fields) or ""
    if best:
        return ValueError(f"unknown config key '{full}'; did you mean '{prefix}{best}'?")
    known = ", ".join(f"'{prefix}{f}'" for f in fields)
    return ValueError(f"unknown config key '{full}'; known keys here: {known}")


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _check_value(value: Any, tp: Any, where: str) -> Any:
    """Return ``value`` converted to annotation ``tp`` or raise a ValueError naming ``where``."""
    if tp is Any:
        return value
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)

    if origin is Union or (hasattr(types, "UnionType") and origin is types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check_value(value, arg, where)
            except ValueError:
                pass
        raise ValueError(f"config key '{where}' expects {_type_name(tp)}, got {type(value).__name__} {value!r}")
    if origin is Literal:
        # type() match so that True is not accepted for Literal[1] (True == 1 in Python)
        if any(type(value) is type(a) and value == a for a in args):
            return value
        raise ValueError(f"config key '{where}' must be one of {list(args)}, got {value!r}")
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ValueError(
                f"config key '{where}' is a nested config ({tp.__name__}) and needs a mapping, "
                f"got {type(value).__name__} {value!r}; set its fields as '{where}.<field>=...'"
            )
        return from_dict(tp, value, _prefix=f"{where}.")
    if origin in (list, tuple) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ValueError(
                f"config key '{where}' expects a list, got {type(value).__name__} {value!r}; write it as [a, b, ...]"
            )
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(value) != len(args):
                raise ValueError(f"config key '{where}' expects exactly {len(args)} items, got {len(value)}: {value!r}")
            return tuple(_check_value(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        item_tp = args[0] if args else Any
        items = [_check_value(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if (origin is tuple or tp is tuple) else items
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise ValueError(f"config key '{where}' expects a mapping, got {type(value).__name__} {value!r}")
        key_tp, val_tp = args if args else (Any, Any)
        return {
            _check_value(k, key_tp, f"{where}.<key>"): _check_value(v, val_tp, f"{where}.{k}") for k, v in value.items()
        }
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ValueError(f"config key '{where}' expects a bool (true/false), got {type(value).__name__} {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ValueError(f"config key '{where}' expects an int, got {type(value).__name__} {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and _FLOAT_STRING.match(value.strip()):
            return float(value)
        raise ValueError(f"config key '{where}' expects a float, got {type(value).__name__} {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ValueError(
            f"config key '{where}' expects a string, got {type(value).__name__} {value!r}; "
            f"quote it if you meant text, e.g. {where}='{value}'"
        )
    if isinstance(tp, type):
        if isinstance(value, tp):
            return value
        raise ValueError(f"config key '{where}' expects {tp.__name__}, got {type(value).__name__} {value!r}")
    raise ValueError(f"config key '{where}' has an unsupported annotation {_type_name(tp)}")


def from_dict(cls: type[T], data: Mapping[str, Any], *, _prefix: str = "") -> T:
    """Build dataclass ``cls`` from a (nested) mapping, strictly: unknown keys and wrong types raise."""
    if not (dataclasses.is_dataclass(cls) and isinstance(cls, type)):
        raise TypeError(f"from_dict needs a dataclass type, got {cls!r}")
    if not isinstance(data, Mapping):
        raise ValueError(f"config '{_prefix.rstrip('.') or '<root>'}' must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs = {}
    for key, value in data.items():
        if not isinstance(key, str) or key not in fields:
            raise _unknown_key_error(_prefix, str(key), list(fields))
        kwargs[key] = _check_value(value, hints[key], f"{_prefix}{key}")
    for name, f in fields.items():
        if name not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ValueError(
                f"config key '{_prefix}{name}' is required (no default); set it in the YAML or as an override"
            )
    return cls(**kwargs)


def parse_overrides(overrides: Sequence[str]) -> dict[str, Any]:
    """Turn ``["a.b=1", "c=[1, 2]"]`` into a nested dict, values parsed with ``yaml.safe_load``."""
    nested: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise ValueError(f"override must look like key=value or a.b.c=value, got {item!r}")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as err:
            raise ValueError(
                f"override {item!r}: value is not valid YAML ({err}); quote strings, e.g. {key}='...'"
            ) from err
        node = nested
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ValueError(f"override {item!r} conflicts with an earlier override setting '{part}' to a value")
            node = child
        node[parts[-1]] = value
    return nested


def _merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(dict(out[key]), value)
        else:
            out[key] = value
    return out


def to_dict(cfg: Any) -> Any:
    """Resolved config as plain Python: dataclasses -> dicts, tuples -> lists (YAML/JSON safe).

    Only ``init`` fields are included, so ``from_dict(type(cfg), to_dict(cfg)) == cfg``.
    """
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        return {f.name: to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg) if f.init}
    if isinstance(cfg, Mapping):
        return {k: to_dict(v) for k, v in cfg.items()}
    if isinstance(cfg, (list, tuple)):
        return [to_dict(v) for v in cfg]
    return cfg


def apply_overrides(cfg: T, overrides: Sequence[str]) -> T:
    """Return a new config: ``cfg`` with ``key=value`` overrides applied and re-validated."""
    return from_dict(type(cfg), _merge(to_dict(cfg), parse_overrides(overrides)))


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key repeated within one mapping."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first set on line {seen[key]})", key_node.start_mark
                )
            seen[key] = line
        return super().construct_mapping(node, deep)


def read_yaml(path: str | Path) -> Any:
    """Parse a YAML file strictly: a syntax error or a repeated key is a ValueError naming
    ``file:line`` (the line of the repeated key, or where parsing failed)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    text = path.read_text(encoding="utf-8")
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        context = err.context or ""
        if err.context and err.context_mark is not None and err.context_mark is not mark:
            context += f" (from line {err.context_mark.line + 1})"
        what = "; ".join(p for p in (context, err.problem) if p)
        raise ValueError(f"{where}: invalid YAML: {what}") from None
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: invalid YAML: {err}") from None


def load_config(cls: type[T], path: str | Path | None = None, overrides: Sequence[str] = ()) -> T:
    """Load ``cls`` from an optional YAML file, then apply ``key=value`` overrides (later wins)."""
    data: dict[str, Any] = {}
    if path is not None:
        loaded = read_yaml(path)
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, Mapping):
            raise ValueError(
                f"config file {path} must hold a YAML mapping at the top level, got {type(loaded).__name__}"
            )
        data = dict(loaded)
    return from_dict(cls, _merge(data, parse_overrides(overrides)))
