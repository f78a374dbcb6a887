"""Corpora into TFRecord datasets: recording sources (``adapters``), the build, and the validator."""
