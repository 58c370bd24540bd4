"""Opened files: the file list and per-plane files opened as one z-stack."""
