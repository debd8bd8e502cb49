"""``python -m modelrouter``: the same command line as ``modelrouter``."""

import sys

from modelrouter.cli import main

sys.exit(main())
