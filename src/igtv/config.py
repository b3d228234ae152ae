"""Frozen dataclass configs that round-trip through YAML, with strict key and type checking.

A config file is only a saved dataclass: ``load_config(RunConfig, "my_run.yaml")`` returns the dataclass, and an
unknown or mistyped key is a :class:`ConfigError` naming the key and the file. The configs igtv ships live in the
package (``igtv/configs/*.yaml``, see :func:`shipped_config`), so an installed ``igtv`` finds them from any folder:
``igtv train --config pretrain_gtv.yaml`` takes the shipped file when no such file is in the current folder.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from igtv.io import write_text_atomic

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or mapping does not match its dataclass."""


def to_dict(config: Any) -> dict[str, Any]:
    """Dataclass -> plain dict of YAML-safe values (tuples become lists)."""

    def convert(value: Any) -> Any:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return {f.name: convert(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, (tuple, list)):
            return [convert(v) for v in value]
        if isinstance(value, dict):
            return {k: convert(v) for k, v in value.items()}
        return value

    return convert(config)


def _coerce(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{where}: {value!r} does not match {tp}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {list(args)}")
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping for {tp.__name__}, got {type(value).__name__}")
        return _from_mapping(tp, value, where)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__} {value!r}")
        return dict(value)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__} {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if args and len(args) != len(value):
            raise ConfigError(f"{where}: expected {len(args)} items, got {len(value)}")
        return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True)))
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported field type {tp}")


def _from_mapping(cls: type[T], data: dict[str, Any], where: str) -> T:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} for {cls.__name__} (valid keys: {sorted(names)})")
    kwargs = {k: _coerce(v, hints[k], f"{where}: key {k!r}") for k, v in data.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def from_dict(cls: type[T], data: dict[str, Any], source: str = "<dict>") -> T:
    """Build ``cls`` from a mapping; unknown keys and wrong types raise :class:`ConfigError` naming ``source``."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at top level, got {type(data).__name__}")
    return _from_mapping(cls, data, source)


def shipped_config(name: str) -> Path:
    """Path of a config shipped with igtv (``pretrain_gtv.yaml``, ``demo_finetune.yaml``, ...)."""
    from importlib.resources import files

    path = Path(str(files("igtv") / "configs" / Path(name).name))
    if not path.is_file():
        known = sorted(p.name for p in path.parent.glob("*.yaml"))
        raise ConfigError(f"{name}: no such shipped config (shipped: {', '.join(known)})")
    return path


def resolve_config_path(path: str | Path) -> Path:
    """``path`` itself when it exists, else the shipped config of that file name (``configs/x.yaml`` included)."""
    path = Path(path)
    if path.exists() or path.suffix not in (".yaml", ".yml"):
        return path
    try:
        return shipped_config(path.name)
    except ConfigError:
        return path


def load_config(cls: type[T], path: str | Path) -> T:
    """Load a YAML config into ``cls``; a path that does not exist falls back to the shipped config of that name."""
    path = resolve_config_path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: config file not found") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}: not valid YAML{where}: {problem}") from exc
    return from_dict(cls, data or {}, str(path))


def dump_yaml(config: Any) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False)


def save_config(config: Any, path: str | Path) -> Path:
    """Write ``config`` as YAML, atomically."""
    return write_text_atomic(path, dump_yaml(config))


def replace(config: T, **changes: Any) -> T:
    return dataclasses.replace(config, **changes)


def claim_config(config: Any, path: str | Path, refusal: str) -> Path:
    """Save ``config`` at ``path``, unless a config saved there differs from it other than in ``workers`` (how a
    run is parallelised does not change its output): then raise ``ValueError(refusal)``. Output folders that are
    completed by re-running use it so that a re-run with other settings cannot mix two kinds of output."""
    path = Path(path)
    if path.exists():
        previous = load_config(type(config), path)
        same = replace(previous, workers=config.workers) if hasattr(previous, "workers") else previous
        if dump_yaml(same) != dump_yaml(config):
            raise ValueError(refusal)
    return save_config(config, path)
