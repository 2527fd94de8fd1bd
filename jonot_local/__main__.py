"""``python -m jonot_local`` runs the command line."""

from .cli import main

main()
