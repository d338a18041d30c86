"""``python -m stdb`` is the ``stdb`` command."""

from stdb.cli import main

main(prog_name="stdb")
