"""`python -m replicator`: the command line, as the `replicator` script runs it."""

from replicator.cli import app

app(prog_name="replicator")
