"""The explorer page over real HTTP: the page, its assets, its samples and its headers."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from gateway.app import create_app
from gateway.demo.data import SAMPLES, demo_id, run_name
from gateway.explorer_route import ASSET_TYPES
from gateway.settings import Settings
from tests.conftest import StartGateway
from tests.processes import free_port, running
from tests.servers import Recorder, serve

EXPLORER_DIR = Path(__file__).parent.parent / "gateway" / "explorer"
A_SAMPLE = "e8c272a1-6dfa-5855-91e4-df68c681d226"


class _Tags(HTMLParser):
    """The page's script and style sheet references, and any inline script text."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[str | None] = []
        self.styles: list[str] = []
        self.inline_script = ""
        self.handlers: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        self.handlers += [name for name, _ in attrs if name.startswith("on")]
        if tag == "script":
            self.scripts.append(named.get("src"))
            self._in_script = True
        if tag == "link" and named.get("rel") == "stylesheet":
            self.styles.append(named.get("href") or "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.inline_script += data


def _policy(response: httpx.Response) -> dict[str, str]:
    directives = response.headers["content-security-policy"].split(";")
    return dict(part.strip().partition(" ")[::2] for part in directives if part.strip())


def _assert_locked_down(response: httpx.Response) -> None:
    policy = _policy(response)
    assert policy["default-src"] == "'none'"
    assert policy["script-src"] == "'self'"
    assert policy["style-src"] == "'self'"
    assert policy["connect-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'"
    assert "unsafe-inline" not in response.headers["content-security-policy"]
    assert "unsafe-eval" not in response.headers["content-security-policy"]
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-request-id"]


def test_the_page_is_html_with_a_strict_policy_and_no_inline_script(
    gateway: httpx.Client,
) -> None:
    response = gateway.get("/explorer", headers={"X-Request-ID": "explorer-page-1"})

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["x-request-id"] == "explorer-page-1"
    _assert_locked_down(response)
    tags = _Tags()
    tags.feed(response.text)
    assert tags.scripts == ["explorer/graphql-ws.min.js", "explorer/explorer.js"]
    assert tags.styles == ["explorer/explorer.css"]
    assert tags.inline_script.strip() == ""
    assert tags.handlers == []  # no onclick= and the like: the policy would block them


def test_the_page_with_an_id_is_the_same_static_page(gateway: httpx.Client) -> None:
    plain = gateway.get("/explorer")
    with_id = gateway.get("/explorer", params={"id": "<script>alert(1)</script>"})

    assert with_id.status_code == 200
    assert with_id.content == plain.content
    assert "<script>alert" not in with_id.text


@pytest.mark.parametrize(("name", "media_type"), sorted(ASSET_TYPES.items()))
def test_each_asset_is_served_with_its_type_and_the_policy(
    gateway: httpx.Client, name: str, media_type: str
) -> None:
    response = gateway.get(f"/explorer/{name}")

    assert response.status_code == 200
    assert response.headers["content-type"] == media_type
    assert response.content == (EXPLORER_DIR / name).read_bytes()
    assert response.headers["cache-control"] == "no-cache"
    _assert_locked_down(response)


def test_an_unchanged_asset_is_answered_304_when_revalidated(gateway: httpx.Client) -> None:
    first = gateway.get("/explorer/explorer.js")
    again = gateway.get("/explorer/explorer.js", headers={"If-None-Match": first.headers["etag"]})
    stale = gateway.get("/explorer/explorer.js", headers={"If-None-Match": '"something-else"'})

    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == first.headers["etag"]
    assert stale.status_code == 200


def test_every_file_of_the_explorer_is_served_and_nothing_else(gateway: httpx.Client) -> None:
    shipped = {path.name for path in EXPLORER_DIR.iterdir()}

    assert shipped == {"index.html", *ASSET_TYPES}


@pytest.mark.parametrize(
    "path",
    [
        "/explorer/missing.js",
        "/explorer/index.html",
        "/explorer/explorer.JS",
        "/explorer/",
        "/explorer/%2e%2e%2fexplorer_route.py",
        "/explorer/..%2F__init__.py",
        "/explorer/vendor/graphql-ws.min.js",
    ],
)
def test_an_unknown_asset_is_404(gateway: httpx.Client, path: str) -> None:
    response = gateway.get(path)

    assert response.status_code == 404
    assert response.headers["x-request-id"]
    assert "import" not in response.text


def test_the_vendored_websocket_client_keeps_its_licence_and_version() -> None:
    head = (EXPLORER_DIR / "graphql-ws.min.js").read_text()[:1500]

    assert re.match(r"/\*! graphql-ws \d+\.\d+\.\d+ ", head)
    assert "MIT License" in head
    assert "Copyright (c) 2020 Denis Badurina" in head


def test_the_samples_are_empty_by_default(gateway: httpx.Client) -> None:
    response = gateway.get("/explorer/samples.json")

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"samples": []}
    assert response.headers["cache-control"] == "no-store"
    _assert_locked_down(response)


def test_the_samples_are_the_setting_in_its_order(
    start_gateway: StartGateway, upstream: tuple[str, Recorder]
) -> None:
    samples = {"zeta: the last by name, first here": A_SAMPLE, "alpha": SAMPLES["a parent loop"]}
    client = start_gateway(upstream[0], explorer_samples=samples)

    body = client.get("/explorer/samples.json").json()

    assert body == {
        "samples": [
            {"label": "zeta: the last by name, first here", "id": A_SAMPLE},
            {"label": "alpha", "id": SAMPLES["a parent loop"]},
        ]
    }


def test_samples_come_from_the_environment_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    samples = json.dumps({"a leaf": A_SAMPLE.upper(), " padded ": A_SAMPLE})
    monkeypatch.setenv("POLOS_GATEWAY_EXPLORER_SAMPLES", samples)

    assert Settings().explorer_samples == {"a leaf": A_SAMPLE, "padded": A_SAMPLE}


@pytest.mark.parametrize(
    ("samples", "message"),
    [
        ({"not an id": "../etc/passwd"}, "not an execution id"),
        ({"  ": A_SAMPLE}, "1 to 200 characters"),
        ({"x" * 201: A_SAMPLE}, "1 to 200 characters"),
        ({f"s{i}": A_SAMPLE for i in range(101)}, "at most 100 samples"),
    ],
)
def test_a_sample_that_is_not_an_execution_id_is_refused(
    samples: dict[str, str], message: str
) -> None:
    with pytest.raises(ValidationError, match=message) as refused:
        Settings(explorer_samples=samples)

    assert "explorer_samples" in str(refused.value)


def test_serve_demo_lists_the_demo_samples_on_the_page() -> None:
    port = free_port()
    with running("serve", "--demo", "--port", str(port), port=port):
        body = httpx.get(f"http://127.0.0.1:{port}/explorer/samples.json").json()
        page = httpx.get(f"http://127.0.0.1:{port}/explorer", params={"id": A_SAMPLE})

    assert body["samples"] == [{"label": label, "id": id_} for label, id_ in SAMPLES.items()]
    assert page.status_code == 200


def test_a_samples_provider_given_to_the_app_is_asked_on_every_request(
    upstream: tuple[str, Recorder],
) -> None:
    answers: Iterator[dict[str, str]] = iter(
        [{"first": A_SAMPLE}, {"second": SAMPLES["a parent loop"], "third": A_SAMPLE}]
    )
    settings = Settings(upstream_url=upstream[0], explorer_samples={"the setting": A_SAMPLE})
    app = create_app(settings, samples=lambda: next(answers))

    with serve(app) as url, httpx.Client(base_url=url) as client:
        first = client.get("/explorer/samples.json")
        second = client.get("/explorer/samples.json")

    assert first.json() == {"samples": [{"label": "first", "id": A_SAMPLE}]}
    assert second.json() == {
        "samples": [
            {"label": "second", "id": SAMPLES["a parent loop"]},
            {"label": "third", "id": A_SAMPLE},
        ]
    }
    assert second.headers["cache-control"] == "no-store"
    _assert_locked_down(second)


def _offered(base: str) -> dict[str, str]:
    samples = httpx.get(f"{base}/explorer/samples.json").json()["samples"]
    return {sample["label"]: sample["id"] for sample in samples}


AGENT_LABEL = next(label for label, id_ in SAMPLES.items() if id_ == demo_id("live/agent"))


def test_serve_demo_offers_a_fresh_live_agent_run_once_the_offered_one_was_read() -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with running("serve", "--demo", "--port", str(port), port=port) as lines:
        first = _offered(base)
        first_read = httpx.get(f"{base}/api/v1/executions/{first[AGENT_LABEL]}")
        second = _offered(base)
        fresh_read = httpx.get(f"{base}/api/v1/executions/{second[AGENT_LABEL]}")

    assert first == SAMPLES
    assert first_read.json()["status"] == "queued"  # a tree's first read starts its clock
    assert second[AGENT_LABEL] == demo_id(run_name("live/agent", 1)) != first[AGENT_LABEL]
    assert list(second) == list(SAMPLES)
    assert fresh_read.json()["status"] == "queued"
    assert any("each load offers unstarted live runs" in line for line in lines)


def test_serve_demo_lists_the_operators_samples_as_they_are_when_configured() -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    theirs = {"ours": demo_id("live/agent")}
    env = {"POLOS_GATEWAY_EXPLORER_SAMPLES": json.dumps(theirs)}
    with running("serve", "--demo", "--port", str(port), port=port, env=env) as lines:
        httpx.get(f"{base}/api/v1/executions/{demo_id('live/agent')}")
        offered = _offered(base)

    assert offered == theirs
    assert not any("each load offers" in line for line in lines)


def test_serve_demo_with_several_workers_lists_the_seeded_samples() -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    args = ("serve", "--demo", "--port", str(port), "--workers", "2")
    with running(*args, port=port, workers=2):
        httpx.get(f"{base}/api/v1/executions/{demo_id('live/agent')}")
        offered = [_offered(base) for _ in range(4)]

    # The workers are other processes than the demo's: its fresh runs are out of their reach.
    assert offered == [SAMPLES] * 4
