"""The errors a user can cause, each with a one-line message naming what and where.

This module imports nothing, so that every layer (configuration, data, models, the tools) can
raise and catch them without importing another."""


class ConfigError(ValueError):
    """A mistake in the configuration a user gave; its message is one line naming the key."""


class DataError(ValueError):
    """A dataset that cannot be used as given; the message says what and where, in one line."""


class TrainingStopped(RuntimeError):
    """A run stopped by a fault it cannot go on past (a data-loader worker killed, out of memory, a
    checkpoint that could not be written); the message says what happened, what was kept and how to
    resume, in one line."""
