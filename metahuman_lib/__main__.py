"""``python -m metahuman_lib`` runs the ``metahuman`` command."""

from metahuman_lib.cli import run

run()
