"""Moment estimates: first moments (direction), second moments (scale), their corrections."""
