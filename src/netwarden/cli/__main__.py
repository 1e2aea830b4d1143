"""`python -m netwarden.cli`: the same as the `netwarden` console script."""

from netwarden.cli.main import run

run()
