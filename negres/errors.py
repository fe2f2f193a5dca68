"""The error types a user sees for bad input, each one line: what, its value, what is allowed."""


class ArgumentError(ValueError):
    """A library argument that is not allowed; the message names it, its value, what is allowed."""

    prefix = ""

    def __init__(self, field: str, value: object, allowed: str):
        self.field = field
        self.value = value
        self.allowed = allowed
        super().__init__(f"{self.prefix}{field}={value!r} is not allowed: {allowed}")


class ConfigError(ArgumentError):
    """A config value that is not allowed; the message names field, value and what is allowed."""

    prefix = "config."


class ResumeError(ValueError):
    """Checkpoints a training call cannot resume from: another run's, or another shape."""


class DiskFullError(OSError):
    """A write ran out of disk space; the message names the directory and the space needed."""


class WorkdirError(ValueError):
    """The workdir cannot be used as asked (already holds results, or is not writable)."""
