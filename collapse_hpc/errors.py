"""The one error type users see: a single line, exit status 2, no traceback; and one_line, how any
text from the input (a key, a path, a file name) is printed; and path_argument, every command's path
arguments' type."""
import argparse


class UserError(Exception):
    """Bad input (config, file, model, run folder). The CLI prints `error: <message>` and exits 2."""

    exit_code = 2


class ConfigError(UserError):
    """A configuration problem; the message names the file and the key."""


class NotAFormat(UserError):
    """--from PATH holds no file of a format the experiment it went to reads: `data prepare` adds to the
    line what the other experiments' --from takes (the lm's text formats; the vae's IDX images)."""


def first_line(error: BaseException, limit: int | None = 120) -> str:
    """A library error's first line, at most `limit` characters (None: whole), for a UserError quoting it;
    its type's name where it has no words (torch.load of a file cut short raises a bare EOFError)."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:limit]


def one_line(text) -> str:
    """`text` as one line that shows what it holds: each character Python does not call printable
    written as its escape, as repr writes it. These are what would break the line or drive the terminal
    (a newline, an escape sequence's ESC or CSI, Unicode's line and paragraph separators), reorder or
    hide what is shown (a right-to-left override, a zero-width joiner), pass for a plain space (a
    no-break space) or not print at all (the surrogate an undecodable byte of a file name becomes):
    a message quoting a YAML key "a\\nb" or a path, verify naming a stray file."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


def path_argument(text: str) -> str:
    """A path argument (argparse's type=) of every command, `collapse-hpc lm`'s too: an empty one (`--run
    "$RUN"` with RUN unset) was taken as the default run folder, or as the current folder."""
    if not text:
        raise argparse.ArgumentTypeError("an empty path (an unset shell variable?); give a path")
    return text
