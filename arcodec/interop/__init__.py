"""arcodec inside other tools: a Pillow plugin that opens and saves .arc files."""
