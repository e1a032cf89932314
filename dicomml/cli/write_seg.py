"""``dicomml write-seg PRED --manifest M --series KEY -o out.dcm``: a prediction file back to DICOM SEG."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from dicomml.cli._paths import output_option
from dicomml.config import parse_labels, read_yaml_file
from dicomml.errors import ConfigError
from dicomml.paths import os_reason

__all__ = ["command", "parse_labels_option", "source_options"]


def parse_labels_option(ctx: click.Context | None, param: click.Parameter | None, values: tuple[str, ...]) -> Any:
    """Click callback: ``liver=1`` pairs, or one YAML file holding the config's ``labels`` form
    (as ``dicomml labels --format yaml`` writes it: under a top-level ``labels`` key, or bare);
    the labels sorted by value, each name and value once."""
    if len(values) == 1 and values[0].endswith((".yaml", ".yml")):
        try:  # the config's reader: UTF-8, one line per problem, no key given twice
            spec = read_yaml_file(values[0])
        except OSError as exc:
            raise ConfigError(f"{values[0]}: cannot read the labels ({os_reason(exc)})", path=values[0]) from None
        if isinstance(spec, dict) and list(spec) == ["labels"]:
            spec = spec["labels"]  # the file `dicomml labels --format yaml` writes
        return parse_labels(spec, key=f"{values[0]}: labels")
    labels = []
    for value in values:
        name, _, number = value.partition("=")
        if not name or not number.isdigit():
            raise click.BadParameter(f"{value!r}: expected NAME=VALUE such as liver=1, or a labels .yaml file", param_hint="--label")
        labels.append({"name": name, "value": int(number)})
    return parse_labels(labels, key="--label")  # a name or value given twice is an error, not the last one kept


def source_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """The options write-seg and write-rtstruct share: the prediction, its source series, its labels."""
    options = [
        click.argument("prediction", type=click.Path(exists=True, dir_okay=False)),
        click.option("--manifest", type=click.Path(exists=True, file_okay=False), help="Manifest holding --series."),
        click.option("--series", "series_key", default=None, help="series_key of the source series in --manifest."),
        click.option(
            "--source",
            type=click.Path(exists=True, file_okay=False),
            default=None,
            help="Folder of the source series' files (instead of --manifest/--series); files that are not DICOM images are skipped.",
        ),
        click.option(
            "--label",
            "labels",
            multiple=True,
            required=True,
            callback=parse_labels_option,
            help="NAME=VALUE (repeat; channels and segments follow the values' order), or a YAML file of labels with codes and colours.",
        ),
        output_option("DICOM file to write"),
        click.option("--threshold", default=0.5, show_default=True, help="Binarization of probabilities."),
        click.option("--algorithm", default="dicomml", show_default=True, help="Algorithm name written in the file."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def source_of(manifest: str | None, series_key: str | None, source: str | None) -> tuple[Any, Any]:
    """(source, manifest) for the public API, from the CLI's two ways of naming a series."""
    if source is not None:
        return source, None
    if manifest is None or series_key is None:
        raise ConfigError("name the source series: --manifest M --series KEY, or --source FOLDER")
    return series_key, manifest


@click.command("write-seg")
@source_options
@click.option("--kind", type=click.Choice(["binary", "fractional", "labelmap"]), default="binary", show_default=True)
def command(
    prediction: str,
    manifest: str | None,
    series_key: str | None,
    source: str | None,
    labels: Any,
    output: str,
    threshold: float,
    algorithm: str,
    kind: str,
) -> None:
    """Write PREDICTION (a NIfTI label map or channels, on any grid) as a DICOM SEG on the
    exact grid of its source series."""
    from dicomml import write_seg

    where, opened = source_of(manifest, series_key, source)
    path = write_seg(prediction, where, labels, output, kind=kind, manifest=opened, threshold=threshold, algorithm=algorithm)
    click.echo(f"wrote {path}")
