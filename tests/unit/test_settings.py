"""``volfs serve``'s settings: every flag has a config key, the file and the flags
combine as documented, --print-config says where each value came from, and a bad
file is refused in one line."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import click
import pytest
import yaml
from click.testing import CliRunner

from volfs.cli import main
from volfs.cli.commands import serve
from volfs.cli.reference import options_markdown
from volfs.cli.settings import (
    CONFIG_ENV,
    META_OPTIONS,
    SETTINGS,
    ConfigError,
    choose_config_file,
    param_name,
)
from volfs.config import DaemonConfig

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[DaemonConfig]:
    """``volfs.daemon`` replaced by a module whose run() records the config it is given."""
    configs: list[DaemonConfig] = []

    def run(config: DaemonConfig) -> int:
        configs.append(config)
        return 0

    module = types.ModuleType("volfs.daemon")
    module.run = run  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "volfs.daemon", module)
    return configs


def _printed(output: str) -> tuple[dict[str, object], dict[str, str]]:
    """--print-config's output: the settings it reads as, and each one's source."""
    sources = {}
    for line in output.splitlines():
        if not line.startswith("#"):
            key, _, source = line.partition("  # ")
            sources[key.split(":")[0]] = source
    return yaml.safe_load(output), sources


def test_every_serve_option_has_a_config_key_and_every_key_an_option() -> None:
    options = {p.name for p in serve.params if isinstance(p, click.Option)}
    missing = options - {param_name(key) for key in SETTINGS} - set(META_OPTIONS)
    assert not missing, f"serve options without a config key in SETTINGS: {missing}"
    assert {param_name(key) for key in SETTINGS} <= options
    fields = {f for f in DaemonConfig.__dataclass_fields__}
    assert {s.field for s in SETTINGS.values()} <= fields


def test_every_setting_reaches_the_daemon_config(
        runner: CliRunner, started: list[DaemonConfig], tmp_path: Path) -> None:
    config = tmp_path / "volfs.yaml"
    config.write_text(f"""\
root: {tmp_path}/root
state-dir: {tmp_path}/state
socket: {tmp_path}/s.sock
memory-dir: {tmp_path}/memory
hook-timeout: 7
allow-host-path: [/srv, "/etc/app:ro"]
tree-group: 4242
kube-api: 127.0.0.1:0
docker-host: unix:///tmp/docker.sock
docker-plugin: volfs-test
docker-plugin-dir: {tmp_path}/plugins
log-format: json
debug: true
""")
    result = runner.invoke(main, ["serve", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert started == [DaemonConfig(
        root=tmp_path / "root", state_dir=tmp_path / "state", socket=tmp_path / "s.sock",
        memory_dir=tmp_path / "memory", hook_timeout=7.0,
        allow_host_paths=("/srv", "/etc/app:ro"), tree_gid=4242, kube_api=("127.0.0.1", 0),
        docker_host="unix:///tmp/docker.sock", docker_plugin="volfs-test",
        docker_plugin_dir=tmp_path / "plugins", log_format="json", debug=True)]


def test_flags_win_over_the_file(
        runner: CliRunner, started: list[DaemonConfig], tmp_path: Path) -> None:
    config = tmp_path / "volfs.yaml"
    config.write_text("hook-timeout: 7\nallow-host-path: [/srv]\nlog-format: json\n")
    result = runner.invoke(main, ["serve", "--config", str(config), "--hook-timeout", "2",
                                  "--allow-host-path", "/opt"])
    assert result.exit_code == 0, result.output
    assert (started[0].hook_timeout, started[0].allow_host_paths) == (2.0, ("/opt",))
    assert started[0].log_format == "json"  # from the file: no flag said otherwise


def test_print_config_shows_each_source_and_reads_back_as_a_config(
        runner: CliRunner, started: list[DaemonConfig], tmp_path: Path) -> None:
    config = tmp_path / "volfs.yaml"
    config.write_text("hook-timeout: 7\nstate-dir: /srv/volfs-state\n")
    result = runner.invoke(main, ["serve", "--config", str(config), "--print-config",
                                  "--debug"], env={"DOCKER_HOST": "unix:///tmp/d.sock"})
    assert result.exit_code == 0, result.output
    assert started == []  # nothing served
    values, sources = _printed(result.stdout)
    assert set(values) == set(SETTINGS)
    assert (values["hook-timeout"], sources["hook-timeout"]) == (7.0, str(config))
    assert (values["debug"], sources["debug"]) == (True, "command line")
    assert (values["root"], sources["root"]) == ("/var/lib/volfs", "default")
    assert values["socket"] == "/srv/volfs-state/volfs.sock"  # follows the state dir
    assert sources["socket"].startswith("default")
    assert values["docker-host"] == "unix:///tmp/d.sock"
    assert sources["docker-host"] == "environment: DOCKER_HOST"
    # What it prints is a config file that gives the same settings.
    printed = tmp_path / "printed.yaml"
    printed.write_text(result.stdout)
    again = runner.invoke(main, ["serve", "--config", str(printed), "--print-config"],
                          env={"DOCKER_HOST": "unix:///tmp/d.sock"})
    assert again.exit_code == 0, again.output
    assert _printed(again.stdout)[0] == values
    assert set(_printed(again.stdout)[1].values()) == {str(printed)}


def test_the_example_config_is_accepted(runner: CliRunner) -> None:
    result = runner.invoke(main, ["serve", "--config", str(REPO / "examples/config.yaml"),
                                  "--print-config"])
    assert result.exit_code == 0, result.output
    values, _ = _printed(result.stdout)
    assert values["allow-host-path"] == ["/srv", "/etc/app:ro"]


@pytest.mark.parametrize(("text", "key", "says"), [
    ("allow-hostpath: [/srv]\n", "allow-hostpath", "unknown setting 'allow-hostpath'"),
    ("hook-timeout: soon\n", "hook-timeout", "'soon' is not a valid float"),
    ("hook-timeout: [1]\n", "hook-timeout", "expected a single value, not a list"),
    ("allow-host-path: /srv\n", "allow-host-path", "expected a list"),
    ("debug: maybe\n", "debug", "expected true or false"),
    ("root:\n", "root", "not nothing (null)"),
    ("log-format: xml\n", "log-format", "'xml' is not one of 'text', 'json'"),
    ("kube-api: 10.0.0.1:6443\n", "kube-api", "not a loopback address"),
    ("tree-group: no-such-group-xyz\n", "tree-group", "no such group"),
    ("docker-plugin: ../x\n", "docker-plugin", "letters, digits"),
])
def test_a_bad_setting_is_one_line_naming_the_file_and_the_key(
        runner: CliRunner, started: list[DaemonConfig], tmp_path: Path,
        text: str, key: str, says: str) -> None:
    config = tmp_path / "volfs.yaml"
    config.write_text(text)
    result = runner.invoke(main, ["serve", "--config", str(config)])
    assert result.exit_code == 2
    assert started == []
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {config}: ")
    assert key in lines[0] and says in lines[0], lines[0]


def test_a_file_that_is_not_a_mapping_or_not_yaml_is_one_line(
        runner: CliRunner, tmp_path: Path) -> None:
    for text in ("- root\n", "root: [unclosed\n"):
        config = tmp_path / "volfs.yaml"
        config.write_text(text)
        result = runner.invoke(main, ["serve", "--config", str(config), "--print-config"])
        assert result.exit_code == 2
        assert len(result.stderr.splitlines()) == 1, result.stderr
        assert result.stderr.startswith(f"error: {config}: ")


def test_which_config_file_is_read(tmp_path: Path) -> None:
    default = tmp_path / "etc" / "config.yaml"
    named = tmp_path / "named.yaml"
    named.write_text("debug: true\n")
    # No default file: none is read; once it exists, it is.
    assert choose_config_file(None, {}, default) is None
    default.parent.mkdir()
    default.write_text("debug: true\n")
    assert choose_config_file(None, {}, default) == default
    # The environment names another, or none; --config wins over both.
    assert choose_config_file(None, {CONFIG_ENV: str(named)}, default) == named
    assert choose_config_file(None, {CONFIG_ENV: ""}, default) is None
    assert choose_config_file(str(named), {CONFIG_ENV: ""}, default) == named
    assert choose_config_file("", {CONFIG_ENV: str(named)}, default) is None
    # A file named but missing is an error, not silently the defaults.
    for given, environ in ((str(tmp_path / "missing.yaml"), {}),
                           (None, {CONFIG_ENV: str(tmp_path / "missing.yaml")})):
        with pytest.raises(ConfigError, match="missing.yaml: no such file"):
            choose_config_file(given, environ, default)


def test_the_environment_names_the_config_file(
        runner: CliRunner, started: list[DaemonConfig], tmp_path: Path) -> None:
    config = tmp_path / "volfs.yaml"
    config.write_text("hook-timeout: 9\n")
    result = runner.invoke(main, ["serve", "--print-config"], env={CONFIG_ENV: str(config)})
    assert result.exit_code == 0, result.output
    assert f"# config file: {config}" in result.stdout
    assert "hook-timeout: 9.0  # " + str(config) in result.stdout
    missing = runner.invoke(main, ["serve"], env={CONFIG_ENV: str(tmp_path / "nope.yaml")})
    assert missing.exit_code == 2
    assert missing.stderr == f"error: {tmp_path / 'nope.yaml'}: no such file (the config " \
                             "file; '' reads none)\n"


def test_docs_options_md_is_what_serve_help_says() -> None:
    """docs/options.md is generated: regenerate with python -m volfs.cli.reference."""
    page = (REPO / "docs" / "options.md").read_text()
    assert page == options_markdown(serve), (
        "docs/options.md is stale: python -m volfs.cli.reference > docs/options.md")
    help_text = CliRunner().invoke(main, ["serve", "--help"]).stdout
    for param in serve.params:
        if isinstance(param, click.Option) and param.name != "help":
            flag = max(param.opts, key=len)
            assert flag in help_text and f"| `{flag}" in page, flag
