"""Building-block gradient transformations, one family per module."""
