"""`dicomml info MANIFEST`: what a manifest holds, what is usable, what failed."""

from __future__ import annotations

import click

from dicomml.cli._paths import png_output
from dicomml.cli.listing import DEFAULT_COLUMNS, echo_rows


def _sop_name(uid: str | None) -> str:
    if not uid:
        return "?"
    from pydicom.uid import UID  # pydicom's UID dictionary: imported to run, not for --help

    name = UID(uid).name
    return name if name != uid else uid


@click.command("info")
@click.argument("manifest", type=click.Path(exists=True, file_okay=False))
@click.option("--errors", "show_errors", is_flag=True, help="Print each error row (file, stage, type, message) instead of the summary.")
@click.option(
    "--plot",
    type=click.Path(dir_okay=False),
    callback=png_output,
    help="Also draw the summary and the usable series' spacing and slice counts to this PNG (.png).",
)
def command(manifest: str, show_errors: bool, plot: str | None) -> None:
    """Summarize the manifest MANIFEST: counts, usable series, errors.

    With --errors, list the files (and crawl entries) that could not be
    indexed, one per line with the reason; `dicomml list MANIFEST errors
    --where ...` filters them. With --plot, the summary is drawn too.
    """
    from dicomml.indexer import Manifest  # pyarrow: imported to run, not for --help

    m = Manifest(manifest)
    if show_errors:
        echo_rows(m.rows("errors", columns=DEFAULT_COLUMNS["errors"]))
        return
    if plot:
        from dicomml.viz.cohort import save_cohort_png

        click.echo(f"wrote {save_cohort_png(m, plot)}")
    click.echo(f"{m.path}  (schema {m.meta['schema_version']}, include_phi={m.meta.get('include_phi')})")
    if not m.complete:
        click.echo("  incomplete: the last dicomml index into it has not finished, so its tables may be partial or stale; rerun it")
    for key, value in m.meta.get("counts", {}).items():
        click.echo(f"  {key}: {value}")
    for title, frame in m.summary().items():
        if "sop_class_uid" in frame:
            frame["sop_class_uid"] = frame["sop_class_uid"].map(_sop_name)
        click.echo(f"\n{title}:")
        click.echo("  (none)" if frame.empty else frame.to_string(index=False, header=False).replace("\n", "\n  ").join(("  ", "")))
