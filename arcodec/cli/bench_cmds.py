"""``arcodec bench``: will arcodec make *my* images smaller?"""

from __future__ import annotations

import click

from arcodec.cli.main import main
from arcodec.cli.progress import progress_bar


@main.command()
@click.argument("folder")
@click.option("--limit", type=click.IntRange(0), default=20, show_default=True,
              help="Images to measure: an evenly spaced sample of the sorted files (0: all).")
@click.option("--out", "out", default="arcodec-bench", show_default=True,
              help="Folder for bench.md, bench.json and bench.png.")
@click.option("-f", "--force", is_flag=True, help="Overwrite earlier results in --out.")
def bench(folder, limit, out, force):
    """Does arcodec make FOLDER's images smaller?

    Compresses a sample of FOLDER's images with arcodec auto (what `arcodec compress`
    writes), every shipped model that applies, PNG, WebP lossless and JPEG XL lossless;
    decodes every file and compares; prints a table and writes the results to --out.

    Bits per sub-pixel are pooled over the images a method coded, headers included; "vs
    auto" compares a method's bytes with arcodec auto's on the same images. A failed round
    trip is reported and makes the exit status 1.

    \b
    Examples:
      arcodec bench ~/Pictures/scans            # 20 images; results in ./arcodec-bench/
      arcodec bench photos/ --limit 5 --out /tmp/b -f
    """
    from arcodec.evaluation.bench import output_paths, run_bench, text_table, verdict, write_results
    from arcodec.errors import ArcodecError

    output_paths(out, force)  # refuse before doing any work
    res = run_bench(folder, limit, progress=lambda total: progress_bar(total, "bench"),
                    note=lambda text: click.echo(f"arcodec: note: {text}", err=True), exclude=out)
    for line in text_table(res):
        click.echo(line)
    click.echo()
    for line in verdict(res):
        click.echo(line)
    paths = write_results(res, out, force)
    click.echo(f"wrote {', '.join(str(p) for p in paths)}")
    if res["roundtrip_failures"]:
        raise ArcodecError(f"{len(res['roundtrip_failures'])} round trip(s) failed: see {paths[0]}")
