"""The toolkit's own error types, so CLIs can turn them into a one-line message and let every other error keep
its traceback; and the one way of reading a text file, which names the file when its bytes are not UTF-8.

They live here, in the lowest layer, so that every layer above can raise them or subclass `ToolkitError`.
"""

from pathlib import Path


class ToolkitError(ValueError):
    """A refusal the toolkit means, whose message names the file, folder or value at fault.

    CLIs print it in one line. A ValueError that is not one is a bug and is shown with its traceback. It is
    a ValueError so that callers (and tests) that caught ValueError before these types existed still do.

    `param`, where given, is the parameter the message is about, and the message is what follows its name:
    `TransferError(f"{path}: no such file", param="surrogate")` reads "surrogate runs/x: no such file", and a
    CLI, which knows the flag that set it, shows `error.named("--surrogate")`: "--surrogate runs/x: no such file".
    Library code names parameters, never flags (ARCHITECTURE.md).
    """

    def __init__(self, message="", *, param=None):
        super().__init__(message)
        self.param = param

    def named(self, name):
        """The message with `name` standing for the parameter it is about (`str` uses the parameter's own name)."""
        message = super().__str__()
        return f"{name} {message}" if self.param and name else message

    def __str__(self):
        return self.named(self.param)


class DatasetError(ToolkitError):
    """A file or folder that cannot be used as data; the message names it."""


class FlagError(ToolkitError):
    """A flag value that cannot be used (or that differs from the run being resumed); the message names it."""


class FileError(ToolkitError):
    """A file the toolkit reads back (a run's config.json, a JSON record) that cannot be read as what it should
    be: not UTF-8, or damaged JSON. The message names it."""


def read_text(path, error=FileError):
    """`path`'s text, decoded as UTF-8 (a leading byte-order mark dropped).

    Bytes that are not UTF-8 raise `error` naming the file, the line and the first bad byte: Python's own
    message ("'utf-8' codec can't decode byte ...") names no file, and the locale's encoding, which
    `Path.read_text` would use, is not what the datasets and records are written in.
    """
    data = Path(path).read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as decode:
        line = data.count(b"\n", 0, decode.start) + 1
        raise error(f"{path}: not UTF-8 text (byte 0x{data[decode.start]:02x} on line {line}, "
                    f"offset {decode.start}); save it as UTF-8") from None
    return text.removeprefix("\ufeff")
