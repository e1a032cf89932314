"""`dicomml studies MANIFEST --config roles.yaml`: how a study config's roles match, before preprocessing."""

from __future__ import annotations

import click


@click.command("studies")
@click.argument("manifest", type=click.Path(exists=True, file_okay=False))
@click.option("--config", "config_path", required=True, type=click.Path(exists=True, dir_okay=False), help="Study config (roles) YAML.")
@click.option("--show-skipped", default=20, show_default=True, help="List at most this many studies left out, with the reason.")
def command(manifest: str, config_path: str, show_skipped: int) -> None:
    """Per role of the config: studies with one matching series, several (ambiguous), none (missing)."""
    from dicomml.indexer import Manifest  # pyarrow and pandas: imported to run, not for --help
    from dicomml.study import load_study_config, match_studies

    config = load_study_config(config_path)
    match = match_studies(Manifest(manifest), config)
    total, usable = len(match.table), len(match.usable)
    click.echo(
        f"{config.name}: {total} studies, {usable} make a sample (reference {config.reference if isinstance(config.reference, str) else 'a grid of no role'}, missing: {config.missing})"
    )
    click.echo(match.summary().to_string(index=False))
    skipped = match.skipped
    if len(skipped) and show_skipped > 0:
        click.echo(f"\nleft out ({len(skipped)}):")
        for row in skipped.head(show_skipped).itertuples(index=False):
            click.echo(f"  {row.study_instance_uid}  {row.status}")
        if len(skipped) > show_skipped:
            click.echo(f"  ... and {len(skipped) - show_skipped} more (--show-skipped {len(skipped)} lists them all)")
