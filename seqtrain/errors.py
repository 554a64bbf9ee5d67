"""The one exception type users see: a bad input or config, reported as a single line."""


class SeqtrainError(Exception):
    """A problem with the user's data or config. The CLI prints the message and exits non-zero.

    Messages name the file, column or config key at fault and say what to do about it.
    """


def first_line(exc: BaseException) -> str:
    """The first line of an exception from a library, for a one-line error; its type if empty."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class Interrupted(SeqtrainError):
    """Ctrl-C or SIGTERM stopped training; the message says where to resume from."""
