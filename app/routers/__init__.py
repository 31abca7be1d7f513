"""HTTP only: parse, authenticate, call one service, shape the response."""
