"""Campaign files: YAML parsed and validated once, at the edge, before anything heavy starts.

The schema is `metanas.cluster.schema.Campaign` (every model forbids unknown keys);
`load_campaign` turns pydantic's report into one line per problem.
"""

from __future__ import annotations

import os
import re
from importlib import resources
from pathlib import Path

import yaml
from pydantic import ValidationError

from metanas.cluster.schema import Campaign

__all__ = ["Campaign", "ConfigError", "demo_config_path", "load_campaign", "parse_campaign"]


class ConfigError(ValueError):
    """A campaign file is missing, unreadable or invalid; the message names the field."""


def demo_config_path() -> Path:
    """The demo campaign's file, shipped in the package (`metanas demo` runs it)."""
    return Path(str(resources.files("metanas.platform").joinpath("demo_campaign.yaml")))


def _format_errors(err: ValidationError) -> str:
    """One line: 'field.path: what is wrong' per field. Union branches pydantic tried
    (tags like 'constrained-int' or "literal['auto']") collapse into their field."""
    by_field: dict[str, list[str]] = {}
    for e in err.errors():
        loc = ".".join(
            str(p)
            for p in e["loc"]
            if not (isinstance(p, str) and (p in ("digits", "folders") or any(ch in p for ch in "-['")))
        )
        msg = e["msg"].removeprefix("Value error, ")
        # A check that names its own field ("ops: unknown op ...") extends the location.
        named = re.match(r"^([\w.]+): (.*)$", msg, re.S)
        if named:
            loc = f"{loc}.{named.group(1)}" if loc else named.group(1)
            msg = named.group(2)
        if e["type"] == "missing":
            msg = "required field is missing"
        elif e["type"] == "extra_forbidden":
            msg = "unknown field (check the spelling)"
        msgs = by_field.setdefault(loc or "<top level>", [])
        if msg not in msgs:
            msgs.append(msg)
    return "; ".join(f"{loc}: {' or '.join(msgs)}" for loc, msgs in by_field.items())


def parse_campaign(data: object, origin: str = "campaign") -> Campaign:
    if not isinstance(data, dict):
        raise ConfigError(
            f"{origin}: expected a mapping of settings at the top level, got {type(data).__name__}"
        )
    try:
        return Campaign.model_validate(data)
    except ValidationError as err:
        raise ConfigError(f"{origin}: {_format_errors(err)}") from None


def load_campaign(path: str | Path) -> Campaign:
    """Read and validate a campaign YAML file; raise ConfigError with a one-line message."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"campaign file {str(path)!r} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except (UnicodeDecodeError, OSError) as err:
        reason = "not a text file" if isinstance(err, UnicodeDecodeError) else (err.strerror or str(err))
        raise ConfigError(f"{path}: cannot be read as a campaign file ({reason})") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    return parse_campaign(_paths_from(data, path.resolve().parent), origin=str(path))


def _paths_from(data: object, base: Path) -> object:
    """Relative data paths (and a latency table's) in a campaign file are relative to the
    file, so a campaign runs the same from any working directory (and its saved copy holds
    absolute paths)."""
    source = data.get("data") if isinstance(data, dict) else None
    if isinstance(source, dict) and isinstance(source.get("paths"), list):
        paths = [
            os.path.normpath(base / p) if isinstance(p, str) and not Path(p).is_absolute() else p
            for p in source["paths"]
        ]
        data = {**data, "data": {**source, "paths": paths}}
    constraints = data.get("constraints") if isinstance(data, dict) else None
    table = constraints.get("latency_table") if isinstance(constraints, dict) else None
    if isinstance(table, str) and not Path(table).is_absolute():
        data = {**data, "constraints": {**constraints, "latency_table": os.path.normpath(base / table)}}
    return data
