"""IPA: inference pipeline adaptation (variant, batch size, replicas per stage) and its benchmark."""

__version__ = "0.1.0"
