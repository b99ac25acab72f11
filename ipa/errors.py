"""Errors that carry a message meant for the user: what is wrong, where, and what would be right."""


class IpaError(Exception):
    """Base of every error the CLI reports without a traceback (exit code 2)."""


class CatalogueError(IpaError):
    """A catalogue or profile file is malformed, or names something unknown."""


class ConfigError(IpaError):
    """A configuration value (CLI argument, config.yaml key) is invalid."""


class ApplyFailed(IpaError):
    """A backend could not move to a configuration. ``reached`` is the configuration it is at
    now (the stages it did change, read back), so the caller's next change starts from the truth."""

    def __init__(self, message: str, reached=None):
        super().__init__(message)
        self.reached = reached


class ProfileMissing(CatalogueError):
    """A variant has no profile yet (run `ipa profile`)."""
