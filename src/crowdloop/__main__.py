"""``python -m crowdloop`` runs the command line."""

from crowdloop.cli import main

main()
