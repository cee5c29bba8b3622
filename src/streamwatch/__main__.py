"""``python -m streamwatch`` runs the CLI."""

from streamwatch.cli import main

main()
