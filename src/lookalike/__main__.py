"""``python -m lookalike`` runs the CLI (handy under ``torchrun -m lookalike train ...``)."""

from lookalike.cli import main

main()
