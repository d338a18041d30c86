"""The offline commit-log tool: ``python -m tools.logtool …`` is ``stdb log …``.

The implementation is stdb/logtool.py (the installed ``stdb`` command needs it in the package).
"""

import sys

from stdb.logtool import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m tools.logtool"))
