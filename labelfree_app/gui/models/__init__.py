"""Models ▸ Manage models: the model manager and model cards."""
