"""Errors a user can fix. The CLI prints them as one line; anything else is a bug and keeps its traceback.

Each class also derives from the built-in exception a caller would expect (ValueError for a wrong setting,
FileNotFoundError for missing data), so ``except ValueError`` keeps working.
"""
from __future__ import annotations


class UserError(Exception):
    """A problem with the input, the settings or the environment, with a message that says how to fix it."""


class ConfigError(UserError, ValueError):
    """A setting has the wrong type or value; the message names the key and the allowed values."""


class DataError(UserError, FileNotFoundError):
    """Data is missing, empty or unreadable; the message names the folder or file."""


class CheckpointError(UserError, RuntimeError):
    """A checkpoint cannot be used: corrupt, from another run, or holding code instead of plain data."""


class DeviceError(UserError, RuntimeError):
    """The device asked for is not a device, or this machine does not have it."""


class NotAGenerator(CheckpointError, ValueError):
    """A file that loads as plain data but is not a generator of the layout asked for."""


class RunLocked(UserError, RuntimeError):
    """Another process is training into the same run folder."""
