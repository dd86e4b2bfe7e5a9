"""Measured results: per-image records (model NLL beside real file size), the comparison
with classical codecs on a folder, and the demo."""
