"""The command line's two consoles: standard output and standard error, shared by every command group.

Soft wrap: a line longer than the terminal is left for the terminal to fold, never broken by rich. Without it rich
lays text out in 80 columns when the output is not a terminal (a pipe, a file, CI's log) and breaks a word longer than
that, so a long path, URL or hash came out split across lines and could not be copied or matched. Tables are laid out
by their own column widths, unaffected.
"""

from __future__ import annotations

from rich.console import Console

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)
