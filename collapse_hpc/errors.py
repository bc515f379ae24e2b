"""The one error type users see: a single line, exit status 2, no traceback."""
import re

# What would break the one line: a newline or other control character a message quotes from the input
# (a YAML key "a\nb", a path), and the line breaks of Unicode.
BREAKS = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")


class UserError(Exception):
    """Bad input (config, file, model, run folder). The CLI prints `error: <message>` and exits 2."""

    exit_code = 2


class ConfigError(UserError):
    """A configuration problem; the message names the file and the key."""


def one_line(message: str) -> str:
    """The message as one line: each control character written as its escape (\\n, \\x00)."""
    return BREAKS.sub(lambda m: repr(m.group())[1:-1], message)
