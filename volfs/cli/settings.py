"""``volfs serve``'s settings: one table of config keys, the config file, and where
each effective value came from.

Every serve flag ``--NAME`` has the config key ``NAME`` (so a file reads like the
command line) and one entry in :data:`SETTINGS`, which says which
:class:`~volfs.config.DaemonConfig` field it fills and how its value is checked.
A new setting is one click option plus one entry here; a test fails when a flag has
no entry.

The config file is ``--config FILE``, else ``$VOLFS_CONFIG``, else
``/etc/volfs/config.yaml`` when it exists; an empty name reads none. Flags given
on the command line win over the file.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import click
import yaml
from click.core import ParameterSource

from volfs.config import (
    DaemonConfig,
    default_memory_dir,
    parse_csi_endpoint,
    parse_group,
    parse_kube_api,
    parse_metrics,
)

DEFAULT_CONFIG_FILE = Path("/etc/volfs/config.yaml")
CONFIG_ENV = "VOLFS_CONFIG"
# The serve options that are about the settings, not settings themselves.
META_OPTIONS = ("config", "print_config", "help")
_CONFIG_META = "volfs.config_file"  # ctx.meta key: the file read, or None


def _same(value: Any) -> Any:
    return value


def _plugin_name(value: str) -> str:
    if value and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", value):
        raise ValueError(f"{value!r}: letters, digits, '_', '.' and '-' only")
    return value


def _tree_gid(value: str | None) -> int:
    return parse_group(value) if value else 0  # none: root's group, root alone gets through


def _kube_api(value: str | None) -> tuple[str, int] | None:
    return parse_kube_api(value) if value else None


def _metrics(value: str | None) -> tuple[str, int] | None:
    return parse_metrics(value) if value else None


def _csi_endpoint(value: str | None) -> Path | None:
    return parse_csi_endpoint(value) if value else None


def _csi_node_id(value: str | None) -> str:
    if value and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}", value):
        raise ValueError(f"{value!r}: letters, digits, '_', '.' and '-' only, at most 128")
    return value or ""


@dataclass(frozen=True)
class Setting:
    """One serve setting: the DaemonConfig field it fills, and ``convert`` from the
    flag's value to the field's (raising ValueError, in one line, on a bad value)."""

    field: str
    convert: Callable[[Any], Any] = _same


# Config key (the flag's long name) -> its setting, in the order --print-config shows.
SETTINGS: dict[str, Setting] = {
    "root": Setting("root"),
    "state-dir": Setting("state_dir"),
    "socket": Setting("socket"),
    "memory-dir": Setting("memory_dir"),
    "hook-timeout": Setting("hook_timeout"),
    "allow-host-path": Setting("allow_host_paths", tuple),
    "tree-group": Setting("tree_gid", _tree_gid),
    "kube-api": Setting("kube_api", _kube_api),
    "metrics": Setting("metrics", _metrics),
    "csi-endpoint": Setting("csi_endpoint", _csi_endpoint),
    "csi-node-id": Setting("csi_node_id", _csi_node_id),
    "docker-host": Setting("docker_host", lambda value: value or None),
    "docker-plugin": Setting("docker_plugin", _plugin_name),
    "docker-plugin-dir": Setting("docker_plugin_dir"),
    "recover-containers": Setting("recover_containers"),
    "keep-connection": Setting("keep_connection"),
    "writeback-cache": Setting("writeback_cache"),
    "log-format": Setting("log_format"),
    "debug": Setting("debug"),
}


def param_name(key: str) -> str:
    """The click parameter (and serve argument) of config key ``key``."""
    return key.replace("-", "_")


class ConfigError(click.ClickException):
    """A config file that cannot be used: one line, exit status 2, no usage text."""

    exit_code = 2

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True, file=file)


def checked(key: str) -> Callable[[click.Context, click.Parameter, Any], Any]:
    """A click callback that refuses a bad command-line value of ``key`` as click does."""

    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        try:
            SETTINGS[key].convert(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None
        return value

    return callback


def daemon_config(values: Mapping[str, Any]) -> DaemonConfig:
    """The DaemonConfig of serve's (already checked) argument values."""
    return DaemonConfig(**{setting.field: setting.convert(values[param_name(key)])
                           for key, setting in SETTINGS.items()})


# -- the config file ----------------------------------------------------------------------


def choose_config_file(given: str | None, environ: Mapping[str, str],
                       default: Path = DEFAULT_CONFIG_FILE) -> Path | None:
    """The config file to read: ``--config``, else ``$VOLFS_CONFIG``, else ``default``
    if it exists; None for none ('' given or set reads none).

    Raises:
        ConfigError: a file named on the command line or in the environment is missing.
    """
    if given is None and CONFIG_ENV in environ:
        given = environ[CONFIG_ENV]
    if given is None:
        return default if default.exists() else None
    if not given:
        return None
    path = Path(given)
    if not path.is_file():
        raise ConfigError(f"{path}: no such file (the config file; '' reads none)")
    return path


def load_config(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    """The eager ``--config`` callback: the file's settings become serve's defaults,
    so flags given on the command line still win."""
    path = choose_config_file(value, os.environ)
    ctx.meta[_CONFIG_META] = path
    if path is None:
        return
    settings = read_config(path, {p.name: p for p in ctx.command.params if p.name}, ctx)
    ctx.default_map = {**(ctx.default_map or {}), **settings}


def read_config(path: Path, params: Mapping[str, click.Parameter],
                ctx: click.Context) -> dict[str, Any]:
    """``path``'s settings, by serve argument name, each checked against its flag.

    Raises:
        ConfigError: one line naming the file and, for a bad setting, its key.
    """
    try:
        settings = yaml.safe_load(path.read_text()) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: {str(exc).splitlines()[0]}") from None
    if not isinstance(settings, dict):
        raise ConfigError(f"{path}: must be a mapping of serve's settings to values")
    values = {}
    for key, value in settings.items():
        if str(key) not in SETTINGS:
            raise ConfigError(f"{path}: unknown setting {key!r} "
                              f"(known: {', '.join(SETTINGS)})")
        name = param_name(str(key))
        try:
            values[name] = _cast(params[name], value, ctx)
            SETTINGS[str(key)].convert(values[name])
        except (ValueError, click.BadParameter) as exc:
            detail = exc.message if isinstance(exc, click.BadParameter) else str(exc)
            raise ConfigError(f"{path}: {key}: {detail}") from None
    return values


def _cast(param: click.Parameter, value: Any, ctx: click.Context) -> Any:
    """``value`` from YAML as the flag would take it (ValueError if its type is wrong)."""
    if param.multiple:
        if not isinstance(value, list):
            raise ValueError(f"expected a list, not {_yaml_type(value)}")
        return tuple(_cast_one(param, item, ctx) for item in value)
    if isinstance(param, click.Option) and param.is_flag:
        if not isinstance(value, bool):
            raise ValueError(f"expected true or false, not {_yaml_type(value)}")
        return value
    return _cast_one(param, value, ctx)


def _cast_one(param: click.Parameter, value: Any, ctx: click.Context) -> Any:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"expected a single value, not {_yaml_type(value)}")
    return param.type.convert(value if isinstance(param.type, click.FloatRange | click.IntRange)
                              else str(value), param, ctx)


def _yaml_type(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, dict | list):
        return "a mapping" if isinstance(value, dict) else "a list"
    return repr(value)


# -- --print-config -----------------------------------------------------------------------


def render(ctx: click.Context, environ: Mapping[str, str] = os.environ) -> str:
    """The effective settings as a config file, each line saying where its value came
    from (default, the config file's path, command line, environment)."""
    path: Path | None = ctx.meta.get(_CONFIG_META)
    lines = ["# volfs serve: effective settings (a valid config file)",
             f"# config file: {path if path is not None else 'none'}"]
    for key in SETTINGS:
        value, source = effective(key, ctx, path, environ)
        text = yaml.safe_dump(value, default_flow_style=True, width=10_000)
        lines.append(f"{key}: {text.removesuffix(chr(10)).removesuffix('...').strip()}"
                     f"  # {source}")
    return "\n".join(lines)


def effective(key: str, ctx: click.Context, path: Path | None,
              environ: Mapping[str, str]) -> tuple[Any, str]:
    """``key``'s value in config-file form, and where it came from."""
    name = param_name(key)
    value = ctx.params[name]
    source = _source(ctx.get_parameter_source(name), path)
    if value is None:  # a default that depends on another setting or the environment
        value, source = _derived(key, ctx.params, environ)
    if isinstance(value, tuple):
        return [str(item) for item in value], source
    return (str(value) if isinstance(value, Path) else value), source


def _source(source: ParameterSource | None, path: Path | None) -> str:
    if source == ParameterSource.COMMANDLINE:
        return "command line"
    if source == ParameterSource.ENVIRONMENT:
        return "environment"
    if source == ParameterSource.DEFAULT_MAP:
        return str(path)
    return "default"


def _derived(key: str, params: Mapping[str, Any], environ: Mapping[str, str]
             ) -> tuple[Any, str]:
    state_dir = Path(params["state_dir"])
    if key == "socket":
        return DaemonConfig(state_dir=state_dir).socket_path, "default: <state-dir>/volfs.sock"
    if key == "memory-dir":
        return default_memory_dir(state_dir), "default: a tmpfs folder for this state dir"
    if key == "docker-host":
        if environ.get("DOCKER_HOST"):
            return environ["DOCKER_HOST"], "environment: DOCKER_HOST"
        from volfs.runtime.docker import DEFAULT_DOCKER_HOST  # the docker SDK: only here

        return DEFAULT_DOCKER_HOST, "default"
    if key == "csi-node-id":
        return socket.gethostname(), "default: this host's name"
    return "", "default: none"
