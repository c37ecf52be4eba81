"""docs/options.md, written from serve's click options, so the page and ``volfs serve
--help`` cannot drift (a test compares them). Regenerate it with::

    python -m volfs.cli.reference > docs/options.md
"""

from __future__ import annotations

import click

from volfs.cli.settings import DEFAULT_CONFIG_FILE, META_OPTIONS, SETTINGS, param_name

_HEADER = f"""\
# `volfs serve` options

Generated from the command's own definitions by `python -m volfs.cli.reference`
(a test fails when this page and `volfs serve --help` differ).

Every option has a key of its own name in the config file, YAML read from `--config
FILE`, else from the file `$VOLFS_CONFIG` names, else from `{DEFAULT_CONFIG_FILE}` when
it exists (an empty name reads none). Options given on the command line win over the
file. `volfs serve --print-config` prints the effective settings, each with where it
came from, as a config file, and exits; `examples/config.yaml` is an example.

| option | config key | what it does |
| --- | --- | --- |
"""


def options_markdown(command: click.Command) -> str:
    """The reference page of ``command``'s (serve's) options, as its --help shows them."""
    keys = {param_name(key): key for key in SETTINGS}
    ctx = click.Context(command, info_name=command.name)
    rows = []
    for param in command.params:
        record = param.get_help_record(ctx)
        if not isinstance(param, click.Option) or param.name is None or record is None:
            continue
        key = keys.get(param.name)
        if key is None and param.name not in META_OPTIONS:
            raise ValueError(f"--{param.name}: no config key in volfs.cli.settings.SETTINGS")
        flag, text = record
        flag, text = flag.replace("|", "\\|"), " ".join(text.split()).replace("|", "\\|")
        rows.append(f"| `{flag}` | {f'`{key}`' if key else '(none)'} | {text} |")
    return _HEADER + "\n".join(rows) + "\n"


if __name__ == "__main__":
    from volfs.cli.commands import serve

    print(options_markdown(serve), end="")
