"""Named optimizers, each a readable chain of building blocks."""
