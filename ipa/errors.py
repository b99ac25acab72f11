"""Errors that carry a message meant for the user: what is wrong, where, and what would be right."""


class IpaError(Exception):
    """Base of every error the CLI reports without a traceback (exit code 2)."""


class CatalogueError(IpaError):
    """A catalogue or profile file is malformed, or names something unknown."""


class ConfigError(IpaError):
    """A configuration value (CLI argument, config.yaml key) is invalid."""


class ProfileMissing(CatalogueError):
    """A variant has no profile yet (run `ipa profile`)."""
