"""`dicomml info MANIFEST`: what a manifest holds, what is usable, what failed."""

from __future__ import annotations

import click
import pandas as pd
from pydicom.uid import UID

from dicomml.cli.listing import DEFAULT_COLUMNS, echo_rows
from dicomml.indexer import Manifest

_QUERIES = {
    "series by modality": "SELECT coalesce(modality, '?') AS modality, count(*) AS n FROM series GROUP BY 1 ORDER BY n DESC, 1",
    "instances by SOP class": "SELECT sop_class_uid, count(*) AS n FROM instances GROUP BY 1 ORDER BY n DESC, 1",
    "series by manufacturer": (
        "SELECT coalesce(manufacturer, '?') AS manufacturer, count(*) AS n FROM series GROUP BY 1 ORDER BY n DESC, 1"
    ),
    "series usable or not, by reason": (
        "SELECT CASE WHEN usable THEN 'usable' ELSE reason END AS status, count(*) AS n "
        "FROM series GROUP BY 1 ORDER BY n DESC, 1"
    ),
    "annotations by link": (
        "SELECT modality, coalesce(link_method, 'not linked') AS link, count(*) AS n "
        "FROM annotations GROUP BY 1, 2 ORDER BY n DESC, 1, 2"
    ),
    "errors by type": "SELECT stage, error_type, count(*) AS n FROM errors GROUP BY 1, 2 ORDER BY n DESC, 1, 2",
    "SOP Instance UIDs in more than one file": (
        "SELECT count(*) AS n FROM (SELECT sop_instance_uid FROM instances WHERE sop_instance_uid IS NOT NULL "
        "GROUP BY 1 HAVING count(DISTINCT path) > 1)"
    ),
}


def _sop_name(uid: str | None) -> str:
    if not uid:
        return "?"
    name = UID(uid).name
    return name if name != uid else uid


@click.command("info")
@click.argument("manifest", type=click.Path(exists=True, file_okay=False))
@click.option("--errors", "show_errors", is_flag=True, help="Print each error row (file, stage, type, message) instead of the summary.")
def command(manifest: str, show_errors: bool) -> None:
    """Summarize the manifest MANIFEST: counts, usable series, errors.

    With --errors, list the files (and crawl entries) that could not be
    indexed, one per line with the reason; `dicomml list MANIFEST errors
    --where ...` filters them.
    """
    m = Manifest(manifest)
    if show_errors:
        echo_rows(m.rows("errors", columns=DEFAULT_COLUMNS["errors"]))
        return
    click.echo(f"{m.path}  (schema {m.meta['schema_version']}, include_phi={m.meta.get('include_phi')})")
    for key, value in m.meta.get("counts", {}).items():
        click.echo(f"  {key}: {value}")
    con = m.connect()
    try:
        for title, query in _QUERIES.items():
            frame: pd.DataFrame = con.execute(query).df()
            if "sop_class_uid" in frame:
                frame["sop_class_uid"] = frame["sop_class_uid"].map(_sop_name)
            click.echo(f"\n{title}:")
            click.echo("  (none)" if frame.empty else frame.to_string(index=False, header=False).replace("\n", "\n  ").join(("  ", "")))
    finally:
        con.close()
