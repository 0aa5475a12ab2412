"""`python -m engine` is the same as `tunebench-engine`."""

import sys

from engine.cli import main

sys.exit(main())
