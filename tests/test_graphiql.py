"""GraphiQL at ``GET /graphql`` in a browser, opened on an example that walks a demo tree."""

from __future__ import annotations

import json
import re

import httpx

from gateway.demo.data import SAMPLES
from gateway.graphiql import SAMPLE_QUERY, script_literal
from tests.conftest import graphql
from tests.servers import Recorder

LEAF = SAMPLES["a leaf five levels down"]
BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


def script_constant(html: str, name: str) -> object:
    """The value of ``const NAME = <JSON literal>;`` in the page's script."""
    found = re.search(rf"const {name} = (.*?);\n", html)
    assert found, f"no {name} in the page"
    return json.loads(found.group(1))


def test_a_browser_opening_graphql_gets_graphiql_with_the_tree_query_and_a_demo_leaf(
    gateway: httpx.Client,
) -> None:
    response = gateway.get("/graphql", headers=BROWSER)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    editor = script_constant(html, "EXAMPLE_QUERY")
    assert isinstance(editor, str)
    assert editor.endswith(SAMPLE_QUERY + "\n")
    for walk in ("parent {", "root {", "ancestors(limit: 10) {"):
        assert walk in editor
    variables = script_constant(html, "EXAMPLE_VARIABLES")
    assert isinstance(variables, str)
    assert json.loads(variables) == {"id": LEAF}
    # The editors start from the example unless the page's URL shares a query of its own.
    assert "parameters.q || EXAMPLE_QUERY" in html
    assert "parameters.variables || EXAMPLE_VARIABLES" in html
    # The fetcher posts to the URL the page came from, without its query string: /graphql.
    assert 'const fetchURL = window.location.href.split("?")[0];' in html
    assert "url: fetchURL" in html


def test_the_example_in_graphiql_runs_and_walks_the_leaf_up_to_its_root(
    gateway: httpx.Client, upstream: tuple[str, Recorder]
) -> None:
    body = graphql(gateway, SAMPLE_QUERY, {"id": LEAF})

    execution = body["data"]["execution"]
    assert execution["id"] == LEAF
    assert execution["parent"]["workflowId"] == "summarise_page"
    assert execution["root"]["workflowId"] == "research_report"
    assert len(execution["ancestors"]) == 4
    assert "errors" not in body


def test_a_get_with_a_query_is_still_answered_with_json_not_graphiql(
    gateway: httpx.Client, upstream: tuple[str, Recorder]
) -> None:
    response = gateway.get("/graphql", params={"query": "{ __typename }"}, headers=BROWSER)

    assert response.json() == {"data": {"__typename": "Query"}}


def test_text_put_into_the_page_cannot_end_its_script() -> None:
    hostile = '</script><script>alert(1)</script><!-- & \u2028\u2029 "quoted"'

    literal = script_literal(hostile)

    assert not set("<>&\u2028\u2029") & set(literal)
    assert json.loads(literal) == hostile


def test_graphiql_may_not_be_framed_by_another_site(gateway: httpx.Client) -> None:
    response = gateway.get("/graphql", headers=BROWSER)

    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["content-security-policy"] == "frame-ancestors 'none'"
