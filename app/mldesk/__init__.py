"""mldesk: MachineLabs-style executions on your own hardware."""

__version__ = "0.1.0"
