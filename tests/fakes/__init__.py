"""Fakes of the systems the relay talks to, for tests, benchmarks and crash tests."""
