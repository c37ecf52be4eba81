"""``python -m volfs.cli``: the ``volfs`` command."""

from volfs.cli.commands import main

main(prog_name="volfs")
