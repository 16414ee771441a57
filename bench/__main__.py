"""`python -m bench` is the same as the `archbench` command."""

import sys

from bench.cli import main

sys.exit(main())
