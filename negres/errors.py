"""The one error type a user sees for bad input."""


class ConfigError(ValueError):
    """A config value that is not allowed; the message names field, value and what is allowed."""

    def __init__(self, field: str, value: object, allowed: str):
        self.field = field
        self.value = value
        self.allowed = allowed
        super().__init__(f"config.{field}={value!r} is not allowed: {allowed}")
