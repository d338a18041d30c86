"""The ``stdb`` command (click): ``stdb start``, ``stdb publish``, ``stdb sql`` … (docs/cli.md)."""

from __future__ import annotations

import click

from stdb.cli.commands import COMMANDS
from stdb.cli.start import start
from stdb.cli.status import status

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="stdb")
def main() -> None:
    """stdb: a database server that runs your application's logic (reducers in WebAssembly)
    and streams every change to subscribed clients."""


main.add_command(start)
main.add_command(status)
for _cmd in COMMANDS:
    main.add_command(_cmd)
