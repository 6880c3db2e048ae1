"""GraphiQL at ``GET /graphql`` (``Accept: text/html``), opened on an example that runs.

Strawberry's own GraphiQL page, with two things filled in: the editor holds ``SAMPLE_QUERY``
(an execution and its tree: parent, root, ancestors) and the variables pane the id of a demo
leaf five levels down, so the play button shows a whole tree at once on the demo upstream.
The page's fetcher posts to the URL the page was loaded from, ``/graphql``. A query or
variables shared in the page's URL (``?q=...&variables=...``) still win over the example.

Usage::

    HTMLResponse(graphiql_page())
"""

from __future__ import annotations

import json
import re
from functools import cache

from strawberry.http.ides import get_graphql_ide_html

from gateway.demo.data import SAMPLES

SAMPLE_QUERY = """\
query Tree($id: ID!) {
  execution(id: $id) {
    id workflowId status isRoot createdAt
    parent { id workflowId status }
    root { id workflowId status }
    ancestors(limit: 10) { id workflowId status }
  }
}"""

SAMPLE_ID = SAMPLES["a leaf five levels down"]

_EDITOR_TEXT = f"""\
# An execution and its tree in one request: its parent, its root and every ancestor.
# Press the play button; the id in Variables below is a demo execution five levels down.

{SAMPLE_QUERY}
"""

# Strawberry's template declares its welcome text as a JavaScript template literal, and takes
# the variables from the page's URL only.
_WELCOME = re.compile(r"const EXAMPLE_QUERY = `[^`]*`;")
_URL_VARIABLES = "parameters.variables,"


def script_literal(value: object) -> str:
    """``value`` as a JavaScript literal that is safe inside an HTML ``<script>``.

    JSON is valid JavaScript once the line separators are escaped; escaping ``<``, ``>`` and
    ``&`` too means no ``</script>`` or ``<!--`` in the value can end or change the script.
    """
    text = json.dumps(value, ensure_ascii=False)
    for raw, escaped in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(raw, escaped)
    return text


@cache
def graphiql_page() -> str:
    """Strawberry's GraphiQL HTML with the example in the editor and its variables.

    Raises ``RuntimeError`` when Strawberry's template no longer has the two places this fills
    in, so an upgrade that moves them fails the tests instead of losing the example.
    """
    html = get_graphql_ide_html("graphiql")
    variables = json.dumps({"id": SAMPLE_ID}, indent=2)
    html, welcomes = _WELCOME.subn(
        lambda _: (
            f"const EXAMPLE_QUERY = {script_literal(_EDITOR_TEXT)};\n"
            f"      const EXAMPLE_VARIABLES = {script_literal(variables)};"
        ),
        html,
    )
    url_variables = html.count(_URL_VARIABLES)
    if welcomes != 1 or url_variables != 1:
        raise RuntimeError(
            "Strawberry's GraphiQL template changed: cannot place the example query "
            f"({welcomes} welcome texts, {url_variables} variable defaults found)"
        )
    return html.replace(_URL_VARIABLES, "parameters.variables || EXAMPLE_VARIABLES,")
