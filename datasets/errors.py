"""The one exception type for data problems, so CLIs can turn it into a one-line message."""


class DatasetError(ValueError):
    """A file or folder that cannot be used as data; the message names it."""
