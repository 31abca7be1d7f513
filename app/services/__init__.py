"""Use cases. Each writes its rows in the caller's transaction and never commits."""
