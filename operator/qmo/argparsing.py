"""What the three CLIs (qmo, qmo-eval, qmo-builder) share in how they parse arguments."""

from __future__ import annotations

import argparse


class DefaultsShown(argparse.HelpFormatter):
    """--help names each option's default where it has one worth saying (not None, not a
    switch that is off, not a list that is empty)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            "%(default)" in text
            or default in (None, False, [], argparse.SUPPRESS)
            or not action.option_strings
            or "default" in text
        ):
            return text
        return f"{text} (default: %(default)s)"


def show_defaults(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """`parser` and each of its subcommands print every option's default in --help."""
    parser.formatter_class = DefaultsShown
    for action in parser._actions:  # argparse keeps subcommands nowhere public
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                show_defaults(sub)
    return parser
