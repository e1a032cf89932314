"""Griffe extension: the Sphinx roles of dicomml's numpydoc docstrings become links.

The docstrings name objects the numpydoc way (``:class:`~dicomml.volume.Volume```,
``:func:`load_series```, ``:mod:`dicomml.seg```). mkdocstrings reads Markdown,
where a role would print as it is written; each becomes an optional
cross-reference instead: a link where the target is on the site, plain code
where it is not (a private helper), so no docstring has to change for the site.
"""

from __future__ import annotations

import html
import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:class|func|meth|mod|data|attr|exc|obj):`(~?)([^`<>]+)`")


def _identifier(obj: griffe.Object, target: str, loader: griffe.GriffeLoader) -> str:
    """The full path of ``target`` as written in ``obj``'s docstring.

    A relative name is resolved in the object's scope, else taken as one of
    the exceptions of :mod:`dicomml.errors`, which docstrings name bare.
    """
    head, _, rest = target.partition(".")
    try:
        resolved = obj.resolve(head)
    except Exception:  # griffe raises NameResolutionError, or an alias error for an unresolvable import
        try:
            return loader.modules_collection[f"dicomml.errors.{target}"].path
        except KeyError:
            return target
    return f"{resolved}.{rest}" if rest else resolved


class SphinxRoles(griffe.Extension):
    """Rewrite ``:role:`target``` in every docstring as an optional autorefs link."""

    def on_object(self, *, obj: griffe.Object, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        if obj.docstring is None or ":`" not in obj.docstring.value:
            return

        def link(match: re.Match[str]) -> str:
            short, target = match.group(1), match.group(2).removesuffix("()")
            title = target.rsplit(".", 1)[-1] if short else target
            return f'<autoref identifier="{html.escape(_identifier(obj, target, loader))}" optional><code>{html.escape(title)}</code></autoref>'

        obj.docstring.value = _ROLE.sub(link, obj.docstring.value)
