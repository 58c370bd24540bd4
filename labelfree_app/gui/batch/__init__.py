"""File ▸ Batch export: the dialog and its worker."""
