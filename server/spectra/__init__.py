"""Spectra in memory: the model, readers of real archive formats, the demo archive."""
