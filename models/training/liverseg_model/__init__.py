"""Training, export and evaluation of the liverseg liver model."""
