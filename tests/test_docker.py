"""What can be checked of the Docker files without a Docker engine.

The compose file parses and wires the upstream, Redis, two gateway replicas and nginx as
docs/deploy.md says; every ``POLOS_GATEWAY_*`` name in the Docker files and the deployment
guide is a real setting; the Dockerfile runs the CLI's console script as a non-root user with a
health check on ``/healthz``; nginx balances over both replicas on the gateway's port; and the
queries the docs send are valid JSON and valid GraphQL.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from graphql import parse, validate

from gateway.schema import build_schema
from gateway.settings import Settings

ROOT = Path(__file__).parent.parent
DOCKER = ROOT / "docker"
COMPOSE_FILE = DOCKER / "compose.yaml"
DOCKERFILE = DOCKER / "Dockerfile"
NGINX_CONF = DOCKER / "nginx.conf"
DEPLOY_DOC = ROOT / "docs" / "deploy.md"

REPLICAS = ("gateway-1", "gateway-2")
SETTING_NAME = re.compile(r"POLOS_GATEWAY_[A-Z0-9_]+")
# Compose interpolation: ${NAME}, ${NAME:-default} or ${NAME-default}.
INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::?-(?P<default>[^}]*))?\}")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No ``POLOS_GATEWAY_*`` variable of the machine running the tests leaks into them."""
    for name in list(os.environ):
        if name.upper().startswith("POLOS_GATEWAY_"):
            monkeypatch.delenv(name)


def compose() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(document, dict)
    return document


def service(name: str) -> dict[str, Any]:
    services = compose()["services"]
    assert name in services, f"compose.yaml has no service {name}"
    definition = services[name]
    assert isinstance(definition, dict)
    return definition


def environment(name: str) -> dict[str, str]:
    """A service's environment as compose gives it, ``${VAR:-default}`` resolved to defaults."""
    raw = service(name).get("environment", {})
    if isinstance(raw, list):
        raw = dict(entry.split("=", 1) for entry in raw)
    return {
        key: INTERPOLATION.sub(lambda match: match.group("default") or "", str(value))
        for key, value in raw.items()
    }


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    logical: list[str] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical.append(pending + stripped)
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    instructions = []
    for text in logical:
        keyword, _, arguments = text.partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
    return instructions


def final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile_instructions()
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def only(keyword: str, instructions: list[tuple[str, str]]) -> str:
    found = [arguments for name, arguments in instructions if name == keyword]
    assert len(found) == 1, f"expected one {keyword}, found {found}"
    return found[0]


def nginx_upstream_servers() -> dict[str, list[str]]:
    """Each ``upstream NAME { ... }`` block of nginx.conf with its ``server`` addresses."""
    text = re.sub(r"#.*", "", NGINX_CONF.read_text())
    blocks = re.findall(r"\bupstream\s+(\S+)\s*\{([^}]*)\}", text)
    return {
        name: re.findall(r"^\s*server\s+(\S+?)[\s;]", body, re.MULTILINE) for name, body in blocks
    }


def default(setting: str) -> float:
    """A numeric setting's declared default."""
    value = Settings.model_fields[setting].default
    assert isinstance(value, int | float)
    return float(value)


def seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)?", value)
    assert match is not None, value
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, None: 1.0}[match.group(2)]
    return float(match.group(1)) * scale


def test_the_compose_file_parses_and_has_the_upstream_redis_two_replicas_and_nginx() -> None:
    services = compose()["services"]

    assert set(services) == {"upstream", "redis", *REPLICAS, "nginx"}
    assert services["redis"]["image"].startswith("redis:7-alpine")
    assert services["nginx"]["image"].startswith("nginx:")


def test_the_upstream_and_both_replicas_are_built_from_the_repository_dockerfile() -> None:
    for name in ("upstream", *REPLICAS):
        build = service(name)["build"]

        assert (COMPOSE_FILE.parent / build["context"]).resolve() == ROOT.resolve(), name
        assert (ROOT / build["dockerfile"]).resolve() == DOCKERFILE.resolve(), name
    images = {service(name)["image"] for name in ("upstream", *REPLICAS)}
    assert len(images) == 1, "one image name, so compose builds it once"


def test_the_upstream_service_runs_the_demo_and_publishes_its_counter_on_port_9000() -> None:
    upstream = service("upstream")

    # The container's upstream must listen beyond its own loopback for the replicas to reach it.
    expected = ["demo-upstream", "--host", "0.0.0.0", "--port", "9000"]  # noqa: S104
    assert upstream["command"] == expected
    assert any(str(port).endswith(":9000:9000") for port in upstream["ports"])
    assert "/health" in " ".join(upstream["healthcheck"]["test"])


def test_each_replica_reaches_the_upstream_and_shares_redis_with_the_same_key_secret() -> None:
    raw = [service(name)["environment"] for name in REPLICAS]

    assert raw[0] == raw[1], "the replicas differ only in their names"
    for name in REPLICAS:
        env = environment(name)
        assert env["POLOS_GATEWAY_UPSTREAM_URL"] == "http://upstream:9000"
        assert env["POLOS_GATEWAY_REDIS_URL"] == "redis://redis:6379/0"
        assert env["POLOS_GATEWAY_CACHE_KEY_SECRET"]
        assert "command" not in service(name), "the replicas run the image's CMD, serve"


def test_each_replica_is_checked_on_healthz_and_waits_for_a_healthy_upstream_and_redis() -> None:
    for name in REPLICAS:
        replica = service(name)
        port = environment(name).get("POLOS_GATEWAY_PORT", "8000")

        assert f"127.0.0.1:{port}/healthz" in " ".join(replica["healthcheck"]["test"])
        assert replica["depends_on"] == {
            "upstream": {"condition": "service_healthy"},
            "redis": {"condition": "service_healthy"},
        }
    assert "redis-cli" in service("redis")["healthcheck"]["test"]


def test_a_replica_is_given_longer_to_stop_than_its_longest_request() -> None:
    for name in REPLICAS:
        grace = seconds(service(name)["stop_grace_period"])

        assert grace > default("request_deadline")


def test_nginx_is_on_host_port_8080_with_the_repository_config_after_both_replicas() -> None:
    nginx = service("nginx")

    assert any(str(port).endswith(":8080:80") for port in nginx["ports"])
    mounts = [str(volume).split(":") for volume in nginx["volumes"]]
    config = [mount for mount in mounts if mount[1] == "/etc/nginx/nginx.conf"]
    assert config, "nginx.conf is not mounted where nginx reads it"
    assert (COMPOSE_FILE.parent / config[0][0]).resolve() == NGINX_CONF.resolve()
    for name in REPLICAS:
        assert nginx["depends_on"][name]["condition"] == "service_healthy"


def test_the_compose_redis_url_and_key_secret_are_accepted_by_the_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in environment("gateway-1").items():
        monkeypatch.setenv(name, value)

    settings = Settings()

    assert str(settings.redis_url) == "redis://redis:6379/0"
    assert settings.cache_key_secret is not None
    assert settings.upstream_base == "http://upstream:9000"


def test_the_compose_redis_url_without_the_key_secret_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = environment("gateway-1")
    del env["POLOS_GATEWAY_CACHE_KEY_SECRET"]
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    with pytest.raises(ValueError, match="cache_key_secret"):
        Settings()


@pytest.mark.parametrize(
    "path",
    [COMPOSE_FILE, DOCKERFILE, DEPLOY_DOC],
    ids=lambda path: str(path.relative_to(ROOT)),
)
def test_every_polos_gateway_name_in_the_docker_files_and_deploy_guide_is_a_real_setting(
    path: Path,
) -> None:
    real = {f"POLOS_GATEWAY_{name.upper()}" for name in Settings.model_fields}

    used = set(SETTING_NAME.findall(path.read_text()))

    assert used, f"{path.name} names no setting"
    assert used <= real, f"not settings: {sorted(used - real)}"


def test_the_dockerfile_entrypoint_is_the_console_script_and_its_cmd_serves() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    stage = final_stage()

    entrypoint = json.loads(only("ENTRYPOINT", stage))
    command = json.loads(only("CMD", stage))

    assert entrypoint == ["polos-gateway"]
    assert entrypoint[0] in scripts
    assert scripts[entrypoint[0]] == "gateway.cli:main"
    assert command == ["serve"]


def test_the_image_runs_as_a_user_that_is_not_root() -> None:
    user = only("USER", final_stage())

    name = user.split(":")[0]
    assert name not in {"root", "0"}


def test_the_image_listens_on_every_interface() -> None:
    env = " ".join(arguments for keyword, arguments in final_stage() if keyword == "ENV")

    assert re.search(r"\bPOLOS_GATEWAY_HOST=0\.0\.0\.0\b", env)


def test_the_healthcheck_asks_healthz_with_the_standard_library() -> None:
    healthcheck = only("HEALTHCHECK", final_stage())

    assert "/healthz" in healthcheck
    assert "urllib.request" in healthcheck
    assert "curl" not in healthcheck, "the slim image has no curl"


def test_the_image_is_multi_stage_and_slim() -> None:
    froms = [arguments for keyword, arguments in dockerfile_instructions() if keyword == "FROM"]

    assert len(froms) >= 2
    assert "python:3.11-slim" in DOCKERFILE.read_text()
    assert any("--from=" in arguments for keyword, arguments in final_stage() if keyword == "COPY")


def test_the_dependencies_with_the_redis_extra_are_installed_before_the_source_is_copied() -> None:
    instructions = dockerfile_instructions()
    position = {
        "pyproject": next(
            i for i, (k, a) in enumerate(instructions) if k == "COPY" and "pyproject.toml" in a
        ),
        "dependencies": next(
            i for i, (k, a) in enumerate(instructions) if k == "RUN" and "[redis]" in a
        ),
        "source": next(
            i for i, (k, a) in enumerate(instructions) if k == "COPY" and a.startswith("gateway")
        ),
    }

    assert position["pyproject"] < position["dependencies"] < position["source"]
    copied_before_the_install = " ".join(
        a for k, a in instructions[: position["dependencies"]] if k == "COPY"
    )
    assert "gateway" not in copied_before_the_install


def test_the_build_context_lets_in_every_file_the_dockerfile_copies() -> None:
    ignore = (DOCKER / "Dockerfile.dockerignore").read_text().splitlines()
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}

    for keyword, arguments in dockerfile_instructions():
        if keyword != "COPY" or arguments.startswith("--from"):
            continue
        *sources, _destination = arguments.split()
        for source in sources:
            assert source.rstrip("/") in allowed, f"{source} is left out of the build context"
            assert (ROOT / source).exists(), source


def test_nginx_balances_over_both_replicas_on_the_gateway_port() -> None:
    upstreams = nginx_upstream_servers()
    text = NGINX_CONF.read_text()
    port = environment("gateway-1").get("POLOS_GATEWAY_PORT", "8000")

    assert len(upstreams) == 1
    ((name, servers),) = upstreams.items()
    assert sorted(servers) == [f"{replica}:{port}" for replica in REPLICAS]
    assert re.search(rf"^\s*proxy_pass\s+http://{re.escape(name)};", text, re.MULTILINE)


def test_nginx_passes_the_request_id_and_the_client_address_on() -> None:
    text = NGINX_CONF.read_text()

    for header in ("X-Request-ID", "X-Forwarded-For", "X-Forwarded-Proto", "Host"):
        assert re.search(rf"^\s*proxy_set_header\s+{header}\s", text, re.MULTILINE), header
    assert "$http_x_request_id" in text, "a client's own X-Request-ID is passed through"


def test_nginx_waits_longer_than_the_gateways_request_deadline_and_body_limit() -> None:
    text = NGINX_CONF.read_text()

    read_timeout = re.search(r"^\s*proxy_read_timeout\s+(\S+);", text, re.MULTILINE)
    body_limit = re.search(r"^\s*client_max_body_size\s+(\d+)k;", text, re.MULTILINE)

    assert read_timeout is not None
    assert seconds(read_timeout.group(1)) > default("request_deadline")
    assert body_limit is not None
    assert int(body_limit.group(1)) * 1024 >= default("max_request_bytes")


@pytest.mark.parametrize(
    "path",
    [DEPLOY_DOC, ROOT / "README.md"],
    ids=lambda path: str(path.relative_to(ROOT)),
)
def test_the_queries_the_docker_docs_send_with_curl_are_valid_json_and_valid_graphql(
    path: Path,
) -> None:
    text = path.read_text().replace("\\\n", " ")
    bodies = re.findall(r"curl -s localhost:8080/graphql[^\n]*?-d '(.*?)'", text, re.DOTALL)
    schema = build_schema()._schema

    assert bodies, f"{path.name} shows no query to try"
    for body in bodies:
        payload = json.loads(body)
        assert validate(schema, parse(payload["query"])) == [], payload["query"]
