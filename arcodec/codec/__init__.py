"""Images to .arc files and back: the file format, the stream plan, the coders, the exact
engine, and the only import of the entropy coder (``entropy.py``).

``api`` is the entry point (compress, decompress, encode_images, decode_many); the
container (``container.py``) imports no torch, so this package's ``__init__`` imports
nothing."""
