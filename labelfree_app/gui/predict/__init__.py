"""Predicting the shown file: run controls, the prediction runner, comparing and exporting its result."""
