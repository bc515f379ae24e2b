"""The one error type users see: a single line, exit status 2, no traceback."""


class UserError(Exception):
    """Bad input (config, file, model, run folder). The CLI prints `error: <message>` and exits 2."""

    exit_code = 2


class ConfigError(UserError):
    """A configuration problem; the message names the file and the key."""
