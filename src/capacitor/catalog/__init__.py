"""Hardware and model catalogue: what a GPU can do and what a model weighs."""
