from arcodec.cli import main

main(prog_name="arcodec")
