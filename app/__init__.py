"""byoc-relay: NICE CXone Bring Your Own Channel middleware."""

__version__ = "0.1.0"
