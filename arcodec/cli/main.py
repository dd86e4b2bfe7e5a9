"""Click group and the error handling every command shares."""

from __future__ import annotations

import os
import signal
import sys

import click

from arcodec import __version__


class Terminated(BaseException):
    """SIGTERM (``kill PID``, a service manager stopping us): the command ends as on Ctrl-C,
    its temporary files removed and its inputs kept, with status 143."""


def _terminated(signum, frame):
    import multiprocessing

    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once: the clean-up that follows runs to its end
    for p in multiprocessing.active_children():  # -j workers: only this process got the signal
        p.terminate()
    raise Terminated()


class ArcodecGroup(click.Group):
    """Turns expected failures into one line on stderr and exit status 1 (never a traceback)."""

    def invoke(self, ctx):
        from arcodec.errors import ArcodecError

        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:  # not when a caller chose its own
            signal.signal(signal.SIGTERM, _terminated)
            from arcodec.signals import redeliver_swallowed

            rules = [(lambda e: isinstance(e, Terminated), signal.SIGTERM, _terminated)]
            if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
                rules.append((lambda e: isinstance(e, KeyboardInterrupt), signal.SIGINT, signal.default_int_handler))
            redeliver_swallowed(rules)
        try:
            return super().invoke(ctx)
        except ArcodecError as e:
            click.echo(f"arcodec: error: {e}", err=True)
            sys.exit(1)
        except BrokenPipeError:  # `arcodec info x.arc | head`: the reader left; say nothing, as cat does
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
            sys.exit(141)
        except (OSError, KeyError, ValueError) as e:
            msg = e.args[0] if isinstance(e, KeyError) and e.args else e
            click.echo(f"arcodec: error: {msg}", err=True)
            sys.exit(1)
        except click.exceptions.Exit:  # --help and friends (a RuntimeError to click)
            raise
        except MemoryError:
            click.echo("arcodec: error: out of memory (the images are too large for this machine)", err=True)
            sys.exit(1)
        except RuntimeError as e:  # torch's allocator and numba report exhaustion this way
            click.echo(f"arcodec: error: {str(e).splitlines()[0] if str(e) else e.__class__.__name__}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            # on a terminal, over the progress bar's line (the bar may still be drawn there)
            click.echo(("\r\x1b[K" if sys.stderr.isatty() else "") + "arcodec: interrupted", err=True)
            sys.exit(130)
        except Terminated:
            click.echo(("\r\x1b[K" if sys.stderr.isatty() else "") + "arcodec: terminated", err=True)
            sys.exit(143)


@click.group(cls=ArcodecGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="arcodec")
def main():
    """Lossless image compression with learned probability models.

    \b
    Examples:
      arcodec compress digit.png              # writes digit.png.arc
      arcodec decompress digit.png.arc        # writes digit.png
      arcodec compress a.png b.png dir/ -o set.arc
      arcodec decompress set.arc -o outdir/
      arcodec info digit.png.arc
      arcodec models
    """


# register the commands
from arcodec.cli import bench_cmds, codec_cmds, eval_cmds, inference_cmds, train_cmds  # noqa: E402,F401
