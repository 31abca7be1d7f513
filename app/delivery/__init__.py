"""The outbox and the worker that carries its rows to CXone and to the providers."""
