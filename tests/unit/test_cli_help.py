"""Every command of the CLI documents itself."""

from __future__ import annotations

import click
import typer
from typer.testing import CliRunner

from replicator.cli import app


def _command_paths(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = [prefix]
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            paths += _command_paths(command, (*prefix, name))
        else:
            paths.append((*prefix, name))
    return paths


def test_every_command_has_help_text() -> None:
    root = typer.main.get_command(app)
    assert isinstance(root, click.Group)
    paths = _command_paths(root)
    assert ("dev", "up") in paths and ("dev", "status") in paths and ("dev", "down") in paths
    runner = CliRunner()
    for path in paths:
        result = runner.invoke(app, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert "Usage:" in result.output
        if path:
            command = root
            for part in path:
                assert isinstance(command, click.Group)
                command = command.commands[part]
            assert command.help, f"replicator {' '.join(path)} has no help text"
