"""``python -m metahuman_lib`` runs the ``metahuman`` command."""

import sys

from metahuman_lib.cli import main

sys.exit(main())
