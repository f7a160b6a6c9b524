"""The one exception type that carries a user-facing message.

Library code raises :class:`CimdseError` for bad input (a spec, a policy, a model, a
file); the CLI prints its message and exits with code 2, never a traceback.
"""


class CimdseError(Exception):
    """Bad user input, with a message that names the file, field and rule broken."""


def first_line(err: BaseException) -> str:
    """The first line of a foreign exception's message (its type name if it has none):
    enough to say what went wrong in a one-line message."""
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__
