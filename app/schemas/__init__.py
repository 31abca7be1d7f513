"""API shapes (pydantic), kept apart from the tables."""
