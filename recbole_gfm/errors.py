"""The error a user can fix: a configuration, a file or a setting; its message says where and how."""


class ConfigError(ValueError):
    """A configuration problem the user can fix; the message says where and how."""
