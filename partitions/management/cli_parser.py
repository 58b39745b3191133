"""The `jobs` command's argument parser: every argument error is one line ending with a pointer to --help (not
the usage dump), with a "did you mean" for a mistyped subcommand or choice; a followed job that ended badly exits
non-zero after its summary line, without a `CommandError:` line under it."""

from __future__ import annotations

import argparse
import sys

from django.core.management.base import CommandError, CommandParser

from partitions.core.exceptions import did_you_mean


class JobEnded(CommandError):
    """A job the command followed ended failed or cancelled: its summary line is printed already."""


class OneLineParser(CommandParser):
    """Django's CommandParser (CommandError when called from code) whose errors on a terminal are one line
    ending "(see … --help)", exit code 2."""

    def error(self, message: str) -> None:
        if not self.called_from_command_line:
            raise CommandError(f"Error: {message}")
        line = " ".join(message.split())
        self.exit(2, f"{self.prog}: error: {line} (see {self.prog} --help)\n")

    def _check_value(self, action: argparse.Action, value: object) -> None:
        # argparse's own message lists every choice (the whole subcommand list): name the closest one instead.
        if action.choices is None or value in action.choices:
            return
        hint = did_you_mean(value, action.choices) if isinstance(value, str) else ""
        if isinstance(action, argparse._SubParsersAction):
            raise argparse.ArgumentError(None, f"unknown subcommand {value!r}{hint}")
        known = ", ".join(map(str, action.choices))
        raise argparse.ArgumentError(action, f"invalid choice {value!r}{hint}; choose from {known}")


class OneLineErrors:
    """Mixed into a BaseCommand before it: its parser and subparsers are OneLineParsers (pass
    `parser_class=OneLineParser` to add_subparsers), and JobEnded exits quietly from a terminal."""

    def create_parser(self, prog_name: str, subcommand: str, **kwargs) -> CommandParser:
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        # BaseCommand builds a CommandParser without a class hook; OneLineParser adds behaviour, no state.
        parser.__class__ = OneLineParser
        return parser

    def execute(self, *args, **options):
        try:
            return super().execute(*args, **options)
        except JobEnded as exc:
            if not getattr(self, "_called_from_command_line", False):
                raise
            sys.exit(exc.returncode)
