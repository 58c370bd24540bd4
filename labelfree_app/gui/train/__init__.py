"""Models ▸ Train a model: set-up (pairs, choices), the live view, the training worker."""
