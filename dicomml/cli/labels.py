"""``dicomml labels MANIFEST``: every label and code across a dataset's annotations, with counts."""

from __future__ import annotations

import click

__all__ = ["command"]


@click.command("labels")
@click.argument("manifest", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "yaml"]),
    default="table",
    show_default=True,
    help="yaml: a starting point for the config's labels (one per identifying code, else per name).",
)
def command(manifest: str, fmt: str) -> None:
    """List the segment labels and property codes of every SEG and RTSTRUCT in MANIFEST,
    with how many annotations and image series have each."""
    import yaml

    from dicomml.seg.labels import label_table

    table = label_table(manifest)
    if fmt == "csv":
        click.echo(table.to_csv(index=False), nl=False)
    elif fmt == "yaml":
        labels: dict[str, dict[str, object]] = {}
        named: dict[str, str] = {}  # identifying code -> the label it went to: one label per structure, whatever its names
        for row in table.itertuples():
            code = str(row.code) if row.code and row.identifies else None  # a generic or shared code is no identity
            name = named.get(code, "") if code else ""
            name = name or str(row.label).strip().lower() or str(row.meaning).lower() or "unnamed"
            entry = labels.setdefault(name, {"value": len(labels) + 1, "codes": [], "aliases": []})
            if code and code not in named:
                named[code] = name
                entry["codes"].append(code)  # type: ignore[attr-defined]
            if row.label != name and row.label not in entry["aliases"]:  # type: ignore[operator]
                entry["aliases"].append(row.label)  # type: ignore[attr-defined]
        click.echo(yaml.safe_dump({"labels": labels}, sort_keys=False), nl=False)
    elif table.empty:
        click.echo("no SEG or RTSTRUCT labels in this manifest")
    else:
        click.echo(table.to_string(index=False))
