"""``arcodec train`` (from scratch, or fine-tuning with ``--init``) and ``arcodec export``."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import click

from arcodec.cli.main import main


def _parse_sets(pairs: tuple[str, ...]) -> dict[str, str]:
    """``--set KEY=VALUE`` pairs as strings; :func:`arcodec.registry.coerce` gives them their
    types (training settings here, model settings when the model's config is made)."""
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise click.BadParameter(f"expected key=value, got {pair!r}", param_hint="--set")
        key, value = pair.split("=", 1)
        out[key.strip()] = value.strip()
    return out


@main.command()
@click.option("--model", "arch", default="gated-pixelcnn", show_default=True, help="Architecture name.")
@click.option("--data", default="mnist", show_default=True,
              help="Data set: mnist, fashion-mnist, cifar10, binarized-mnist, colour-mnist, digits, toy1d, "
                   "toy2d, or folder:PATH (random crops; --set crop=32 --set crops=64 --set mode=L|RGB --set flip=true --set chroma=0.5).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Model setting (e.g. hidden=32) or training setting (e.g. steps=4000); repeatable.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run directory.")
@click.option("--data-root", default=None, help="Root of the torchvision data sets.")
@click.option("--download", is_flag=True, help="Let torchvision download the data set into --data-root.")
@click.option("--resume", is_flag=True, help="Continue from OUT/last.pt with the run's own model, data and "
              "settings (OUT/config.json); --model, --data and --set given here change them.")
@click.option("--init", default=None, metavar="NAME_OR_FILE",
              help="Fine-tune: start from this model (zoo name, checkpoint or .arcm file), with its architecture "
                   "and config; a fresh optimiser.")
@click.pass_context
def train(ctx, arch, data, sets, out, data_root, download, resume, init):
    """Train a model; logs train/val bits/dim to OUT/log.jsonl and keeps OUT/best.pt.

    Writes OUT/curves.png at the end (also `arcodec plot OUT`). Runs unchanged under
    torchrun (DistributedDataParallel; --set batch is the global batch). A class-conditional
    model (--set classes=10) trains on the data set's labels.

    \b
    Examples:
      arcodec train --model gated-pixelcnn --data mnist --set hidden=32 --set steps=4000 --out runs/mnist
      arcodec train --model gated-pixelcnn --set classes=10 --data mnist --out runs/mnist-classes
      arcodec train --set steps=8000 --out runs/mnist --resume   # the run's settings, steps raised
      arcodec train --init mnist-gated --data folder:my-digits --set steps=300 --set lr=3e-4 --out runs/mine
      torchrun --standalone --nproc_per_node=2 -m arcodec train --data mnist --out runs/ddp
      arcodec train --init mnist-gated --set device=cuda --set seconds=300 --set steps=1000000 --out runs/gpu
        # a run timed by the clock: the lr's cosine follows the seconds (steps: only a bound)
    """
    from arcodec.registry import coerce
    from arcodec.training.train import TrainConfig, train as run

    values = _parse_sets(sets)
    train_fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    for key, option in (("arch", "--model"), ("data", "--data"), ("init", "--init")):
        if key in values:
            raise click.BadParameter(f"{key} is set with {option}", param_hint="--set")
    if init and resume:
        raise click.UsageError("--init starts a new run from a model, --resume continues a run: give one of them")
    if init and ctx.get_parameter_source("arch") is click.core.ParameterSource.DEFAULT:
        arch = ""  # the initial model's
    saved = Path(out) / "config.json"
    if resume and saved.is_file():  # the run's own settings, those given here on top
        run_cfg = json.loads(saved.read_text())
        was = run_cfg["train"]
        if ctx.get_parameter_source("arch") is click.core.ParameterSource.DEFAULT:
            arch = was["arch"]
        elif arch != was["arch"]:
            raise click.UsageError(f"{out} is a run of {was['arch']}, not {arch}")
        if ctx.get_parameter_source("data") is click.core.ParameterSource.DEFAULT:
            data = was["data"]
        kept = {k: v for k, v in was.items() if k in train_fields and k not in ("arch", "data", "init")}
        values = {**kept, **run_cfg["model"], **values}
    tcfg = coerce(TrainConfig, {k: v for k, v in values.items() if k in train_fields}, "training")
    model_settings = {k: v for k, v in values.items() if k not in train_fields}
    cfg = TrainConfig(arch=arch, data=data, init=init or "", **tcfg)
    path = run(cfg, model_settings, out, resume=resume, data_root=data_root, download=download)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 speaks
        click.echo(f"run saved in {path} (curves: {path / 'curves.png'})")


@main.command()
@click.argument("name")
@click.option("--data", default=None, help="Data set to measure the test NLL on for the card (e.g. mnist).")
@click.option("--data-root", default=None, help="Where the data sets live.")
def calibrate(name, data, data_root):
    """Store a zoo model's integer-engine scales, measured on its training data.

    The float weights stay as they are: files coded with the earlier weights file still
    decode (its sha256 is kept in the card). Example: arcodec calibrate mnist-gated --data mnist
    """
    from arcodec.training.export import calibrate_zoo, update_card

    card = calibrate_zoo(name, data_root)
    if data:  # the codec's numbers changed: measured again on the calibrated model
        from arcodec.evaluation.evaluate import test_nll

        card = update_card(name, test_nll(name, data, data_root))
    click.echo(f"calibrated {name} (sha256 {card['sha256']}; earlier files: {', '.join(card.get('legacy_sha256', []))})")


@main.command("rewrite-zoo")
@click.argument("name")
def rewrite_zoo(name):
    """Write a zoo model's weights as a safetensors model file (NAME.arcm), the same tensors.

    Files coded with the earlier weights file still decode (its sha256 is kept in the card).
    Example: arcodec rewrite-zoo mnist-idf
    """
    from arcodec.training.export import rewrite_zoo as rewrite

    card = rewrite(name)
    click.echo(f"rewrote {name} as {card['weights']} (sha256 {card['sha256']})")


@main.command()
@click.argument("run", type=click.Path(exists=True))
@click.option("-o", "--output", default=None, type=click.Path(dir_okay=False),
              help="Write one model file (FILE.arcm, safetensors) that --model FILE.arcm takes everywhere.")
@click.option("--name", default=None, help="Zoo name, e.g. mnist-gated (a model file's default: its stem).")
@click.option("--id", "model_id", type=int, default=None,
              help="Permanent numeric id written in .arc headers (a zoo entry needs one).")
@click.option("--data", default=None, help="Data set to report test NLL on (e.g. mnist).")
@click.option("--data-root", default=None)
@click.option("--command", "command", default="", help="The training command, recorded in the card.")
@click.option("--notes", default="", help="Free text for the card (e.g. what is worse than hoped).")
@click.option("-f", "--force", is_flag=True, help="Replace an existing zoo entry or model file.")
def export(run, output, name, model_id, data, data_root, command, notes, force):
    """Turn a training run (its best.pt) into a zoo entry with a card and sha256 (--name,
    --id), or into one model file (-o FILE.arcm).

    \b
    Examples:
      arcodec export runs/mnist-gated --name mnist-gated --id 1 --data mnist
      arcodec export runs/mine -o my-model.arcm
      arcodec compress digit.png --model my-model.arcm
    """
    from pathlib import Path

    if output is None and (name is None or model_id is None):
        raise click.UsageError("give --name and --id for a zoo entry, or -o FILE.arcm for a model file")
    if model_id is not None and name is None:
        raise click.UsageError("a zoo entry needs --name")
    path = Path(run)
    ckpt = path / "best.pt" if path.is_dir() else path
    extra = {k: v for k, v in (("command", command), ("notes", notes)) if v}
    if output is not None:
        from arcodec.training.export import export_model_file

        digest = export_model_file(ckpt, output, name or "", extra, force=force)
        if data:  # measured on the written file, then written into its metadata
            from arcodec.evaluation.evaluate import test_nll

            digest = export_model_file(ckpt, output, name or "", {**extra, **test_nll(output, data, data_root)},
                                       force=True)
        click.echo(f"exported {output} (sha256 {digest})")
    if model_id is not None:
        from arcodec.training.export import export_checkpoint

        card = export_checkpoint(ckpt, name, model_id, extra, force=force)
        if data:  # measured on the exported model, then written into its card
            from arcodec.evaluation.evaluate import test_nll

            extra.update(test_nll(name, data, data_root))
            card = export_checkpoint(ckpt, name, model_id, extra, force=True)
        click.echo(f"exported {name} (id {model_id}, sha256 {card['sha256']})")
