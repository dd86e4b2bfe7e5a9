"""``python -m arcodec`` (and ``torchrun -m arcodec train ...``)."""

from arcodec.cli import main

main(prog_name="arcodec")
