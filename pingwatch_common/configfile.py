"""One YAML config file, validated by a pydantic model, with environment overrides and errors that name the
field and its line.

``PREFIX<SECTION>__<KEY>=value`` overrides a key (double underscore between levels); the value is read as a YAML
scalar, or kept as text when it is not one (a connection string full of ';' and '='). Unknown keys are refused by
the models themselves (``extra="forbid"``); this module turns the first validation error into one line:
``hub.yaml: line 12: field 'server.https_port': Input should be a valid integer (got 'abc') (+1 more)``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


class ConfigError(Exception):
    """A configuration problem, phrased for the user: what is wrong, where, and how to fix it."""


@dataclass(frozen=True)
class ConfigFormat:
    """What differs between the programs' config files: the environment prefix and the words of the errors."""

    env_prefix: str  # "PINGWATCH_" (hub) or "PINGWATCH_CLOUD_"
    example: str  # the documented example, e.g. "config/hub.example.yaml"
    missing_hint: str  # what to do when the file does not exist
    sections: str  # a few top-level sections, for "the top level must be a mapping of sections (...)"
    ignore_env: str | None = None  # a regular expression: variables with the prefix that belong to another program


class _LineLoader(yaml.SafeLoader):
    """A YAML loader that remembers the line of every mapping key, so errors can point at the line."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    mapping = loader.construct_mapping(node, deep=True)
    mapping["__lines__"] = {str(key.value): key.start_mark.line + 1 for key, _ in node.value}  # stripped below
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _strip_lines(data: Any, path: tuple[Any, ...], out: dict[tuple[Any, ...], int]) -> Any:
    if isinstance(data, dict):
        lines = data.pop("__lines__", {})
        for k, v in list(data.items()):
            if k in lines:
                out[(*path, k)] = lines[k]
            data[k] = _strip_lines(v, (*path, k), out)
    elif isinstance(data, list):
        return [_strip_lines(v, (*path, i), out) for i, v in enumerate(data)]
    return data


def apply_env(data: dict[str, Any], environ: Mapping[str, str], prefix: str, ignore: str | None = None) -> None:
    """Write ``PREFIX<SECTION>__<KEY>`` variables into ``data`` (in place), except names matching ``ignore``."""
    for name, raw in environ.items():
        if not name.startswith(prefix) or "__" not in name or (ignore and re.match(ignore, name)):
            continue
        keys = [k.lower() for k in name[len(prefix):].split("__")]
        node = data
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise ConfigError(f"environment variable {name}: '{k}' is not a section")
        try:
            node[keys[-1]] = yaml.safe_load(raw) if raw != "" else None
        except yaml.YAMLError:
            node[keys[-1]] = raw  # not a YAML scalar: keep the text


def field_name(loc: Iterable[Any]) -> str:
    """pydantic's error location as the user writes the key: ``cameras[0].source``."""
    return ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in loc).replace(".[", "[")


def _read(path: Path, fmt: ConfigFormat, lines: dict[tuple[Any, ...], int]) -> dict[str, Any]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file; {fmt.missing_hint}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read ({exc})") from None
    try:
        loaded = yaml.load(text, Loader=_LineLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}:{at}: invalid YAML: {problem}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections ({fmt.sections}, ...)")
    stripped: dict[str, Any] = _strip_lines(loaded, (), lines)
    return stripped


def load_model(model: type[M], path: Path | None, fmt: ConfigFormat,
               environ: Mapping[str, str] | None = None) -> M:
    """``path`` (None: defaults only) with the environment's overrides, validated by ``model``.
    Raises ConfigError with one actionable line."""
    environ = os.environ if environ is None else environ
    lines: dict[tuple[Any, ...], int] = {}
    data = _read(path, fmt, lines) if path is not None else {}
    apply_env(data, environ, fmt.env_prefix, fmt.ignore_env)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(describe(exc, str(path) if path is not None else "defaults", lines, fmt.example)) from None


def describe(exc: ValidationError, where: str, lines: Mapping[tuple[Any, ...], int], example: str) -> str:
    """The first error of ``exc`` as one line with the file, the line and the field."""
    errors = exc.errors()
    err = errors[0]
    loc = tuple(err["loc"])
    name = field_name(loc)
    line = next((lines[loc[:n]] for n in range(len(loc), 0, -1) if loc[:n] in lines), None)
    at = f" line {line}:" if line else ""
    if err["type"] == "extra_forbidden":
        msg = f"unknown key '{name}' (check the spelling against {example})"
    else:
        msg = f"field '{name or '(top level)'}': {err['msg']}"
        if "input" in err and not isinstance(err["input"], dict | list):
            msg += f" (got {err['input']!r})"
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}:{at} {msg}{more}"
