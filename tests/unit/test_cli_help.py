"""Every command of the CLI documents itself."""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperGroup
from typer.testing import CliRunner

from replicator.cli import app


def _command_paths(group: TyperGroup, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    paths: list[tuple[tuple[str, ...], Any]] = [(prefix, group)]
    for name, command in group.commands.items():
        if isinstance(command, TyperGroup):
            paths += _command_paths(command, (*prefix, name))
        else:
            paths.append(((*prefix, name), command))
    return paths


def test_every_command_has_help_text() -> None:
    root = typer.main.get_command(app)
    assert isinstance(root, TyperGroup)
    commands = _command_paths(root)
    names = [path for path, _ in commands]
    assert ("dev", "up") in names and ("dev", "status") in names and ("dev", "down") in names
    runner = CliRunner()
    for path, command in commands:
        result = runner.invoke(app, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert "Usage:" in result.output
        assert command.help, f"replicator {' '.join(path)} has no help text"
