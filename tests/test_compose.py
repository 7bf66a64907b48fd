"""The docker compose stacks under compose/, checked without a Docker engine.

Each stack must be a valid compose file (compose-spec JSON Schema, Draft 7), reference only
files that exist, wire its services to each other on ports they really listen on, give the
operator every variable its config needs, and show only metrics our code really exports.
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml

from engine.config.validate import load_config, validate_file
from engine.metrics import EngineMetrics
from ratelimiter_service.metrics import Metrics

REPO = Path(__file__).resolve().parents[1]
COMPOSE = REPO / "compose"
STACKS = {"ratelimiter": COMPOSE / "ratelimiter" / "compose.yaml", "tikv": COMPOSE / "tikv" / "compose.yaml"}
DASHBOARDS = sorted((COMPOSE / "grafana" / "dashboards").glob("*.json"))
DATASOURCE_TARGET = "/etc/grafana/provisioning/datasources/prometheus.yml"
# What a user exports before `docker compose up`; the files themselves carry no secret.
SAMPLE_ENV = {"RATELIMITER_TOKEN": "sample-token", "GRAFANA_ADMIN_PASSWORD": "sample-password"}
SECRET_NAME = re.compile(r"TOKEN|PASSWORD|SECRET|API_KEY", re.IGNORECASE)
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
TIKV_MIN_OPEN_FILES = 82_920  # TiKV refuses to start below this RLIMIT_NOFILE
# Series Prometheus itself writes for every target.
PROMETHEUS_SYNTHETIC = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
APP_ROOT = PurePosixPath("/app")  # WORKDIR of compose/ratelimiter/Dockerfile


# ----------------------------------------------------------------------------- compose interpolation


class MissingVariable(Exception):
    """A `${VAR:?message}` whose variable is unset: compose refuses to start."""


_REFERENCE = re.compile(r"\$(?:(?P<escaped>\$)|\{(?P<braced>[^}]*)\}|(?P<named>[A-Za-z_][A-Za-z0-9_]*))")
_BRACED = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:-|-|:\?|\?|:\+|\+)(?P<arg>.*))?$", re.DOTALL)


def interpolate(value: Any, env: Mapping[str, str]) -> Any:
    """Compose's variable substitution over a loaded document (strings only, like compose)."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        if match["named"]:
            return env.get(match["named"], "")
        braced = _BRACED.match(match["braced"])
        assert braced, f"invalid interpolation ${{{match['braced']}}}"
        name, op, arg = braced["name"], braced["op"], braced["arg"] or ""
        current = env.get(name)
        if op == ":-":
            return current or arg
        if op == "-":
            return arg if current is None else current
        if op in (":?", "?") and (current is None or (op == ":?" and not current)):
            raise MissingVariable(f"{name}: {arg}")
        if op == ":+":
            return arg if current else ""
        if op == "+":
            return "" if current is None else arg
        return current or ""

    return _REFERENCE.sub(substitute, value)


def raw_stack(stack: str) -> dict[str, Any]:
    loaded = yaml.safe_load(STACKS[stack].read_text())
    assert isinstance(loaded, dict)
    return loaded


def load_stack(stack: str, env: Mapping[str, str] = SAMPLE_ENV) -> dict[str, Any]:
    loaded = interpolate(raw_stack(stack), env)
    assert isinstance(loaded, dict)
    return loaded


def services(stack: str) -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = load_stack(stack)["services"]
    return result


def environment(service: Mapping[str, Any]) -> dict[str, str | None]:
    env = service.get("environment", {})
    if isinstance(env, list):
        return {name: (value if sep else None) for name, sep, value in (item.partition("=") for item in env)}
    return {name: None if value is None else str(value) for name, value in env.items()}


def command_args(service: Mapping[str, Any]) -> list[str]:
    command = service.get("command", [])
    return shlex.split(command) if isinstance(command, str) else [str(arg) for arg in command]


def flag_values(args: list[str], flag: str) -> list[str]:
    """Values of `--flag=value` and `--flag value` in a command line."""
    values = []
    for index, arg in enumerate(args):
        if arg.startswith(flag + "="):
            values.append(arg.split("=", 1)[1])
        elif arg == flag and index + 1 < len(args):
            values.append(args[index + 1])
    return values


def host_port(address: str) -> tuple[str, int]:
    """`http://h:p`, `h:p` -> (h, p)."""
    parts = urlsplit(address if "//" in address else f"//{address}")
    assert parts.hostname is not None and parts.port is not None, f"{address!r} names no host:port"
    return parts.hostname, parts.port


def listening_ports(service: Mapping[str, Any]) -> set[int]:
    """Ports the service's process listens on beyond loopback, read from its own settings."""
    ports: set[int] = set()
    env = environment(service)
    if env.get("RATELIMITER_PORT") and env.get("RATELIMITER_HOST") not in LOOPBACK:
        ports.add(int(str(env["RATELIMITER_PORT"])))
    args = command_args(service)
    for flag in ("--client-urls", "--peer-urls", "--addr", "--status-addr", "--web.listen-address"):
        for value in flag_values(args, flag):
            for address in value.split(","):
                host, port = host_port(address)
                if host not in LOOPBACK:
                    ports.add(port)
    ports.update(int(value) for value in flag_values(args, "--port"))  # redis-server: all interfaces
    # opctl: the bind host is checked on its own (test_operator_metrics_listen_beyond_loopback).
    ports.update(int(value) for value in flag_values(args, "--metrics-port"))
    return ports


def bind_mounts(service: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(source, target) of each bind mount, short and long syntax."""
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, _, rest = volume.partition(":")
            if source.startswith((".", "/", "~")):
                yield source, rest.split(":")[0]
        elif volume.get("type") == "bind":
            yield volume["source"], volume["target"]


def named_volume_targets(service: Mapping[str, Any]) -> list[str]:
    targets = []
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, _, rest = volume.partition(":")
            if not source.startswith((".", "/", "~")):
                targets.append(rest.split(":")[0])
        elif volume.get("type") == "volume":
            targets.append(volume["target"])
    return targets


def depends_on(service: Mapping[str, Any]) -> dict[str, str]:
    deps = service.get("depends_on", {})
    if isinstance(deps, list):
        return {name: "service_started" for name in deps}
    return {name: spec["condition"] for name, spec in deps.items()}


def host_ports(service: Mapping[str, Any]) -> Iterator[tuple[str, int, int]]:
    """(host ip, host port, container port) of each published port (short syntax)."""
    for entry in service.get("ports", []):
        parts = str(entry).split(":")
        assert len(parts) == 3, f"publish {entry!r} as ip:host:container so the host side is explicit"
        yield parts[0], int(parts[1]), int(parts[2].split("/")[0])


def operator(stack: str) -> dict[str, Any]:
    return services(stack)["operator"]


def operator_config_path(stack: str) -> Path:
    """The repo file behind the path the operator's command runs (`/app/...` mirrors the repo)."""
    args = command_args(operator(stack))
    assert args[:2] == ["opctl", "run"], args
    in_image = PurePosixPath(args[2])
    return REPO / in_image.relative_to(APP_ROOT)


def dockerfile_copies(dockerfile: Path) -> list[tuple[list[str], str]]:
    copies = []
    for line in dockerfile.read_text().splitlines():
        words = line.split()
        if words and words[0] == "COPY":
            sources = [word for word in words[1:-1] if not word.startswith("--")]
            copies.append((sources, words[-1]))
    return copies


# ----------------------------------------------------------------------------- PromQL metric names

_PROMQL_DROP = [
    re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\''),  # string literals
    re.compile(r"\{[^}]*\}"),  # label matchers
    re.compile(r"\[[^\]]*\]"),  # ranges and subqueries
    re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)"),
    re.compile(r"\boffset\s+\S+"),
]
_IDENTIFIER = re.compile(r"(?<![\w.$])([A-Za-z_:][A-Za-z0-9_:]*)\b(?!\s*\()")
_PROMQL_WORDS = {"and", "or", "unless", "bool", "by", "without", "on", "ignoring", "inf", "nan", "offset"}


def promql_metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (functions, labels and keywords excluded)."""
    text = expr
    for pattern in _PROMQL_DROP:
        text = pattern.sub(" ", text)
    return {name for name in _IDENTIFIER.findall(text) if name.lower() not in _PROMQL_WORDS}


def grafana_variable_expression(query: str) -> str:
    """The PromQL inside a Grafana Prometheus variable query (`label_values(m, l)`, `query_result(...)`)."""
    label_values = re.fullmatch(r"\s*label_values\(\s*(.*),\s*[A-Za-z_][A-Za-z0-9_]*\s*\)\s*", query)
    if label_values:
        return label_values[1]
    query_result = re.fullmatch(r"\s*query_result\((.*)\)\s*", query)
    return query_result[1] if query_result else query


def grafana_query_metric_names(query: str) -> set[str]:
    """Metric names in a Grafana Prometheus variable query."""
    return promql_metric_names(grafana_variable_expression(query))


def exported_metric_names() -> set[str]:
    """Every series name our registries can expose, derived from each family's type."""
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "summary": ("", "_sum", "_count", "_created"),
        "gauge": ("",),
        "info": ("_info",),
    }
    names: set[str] = set()
    for registry in (Metrics("x").registry, EngineMetrics().registry):
        for family in registry.collect():
            names.update(family.name + suffix for suffix in suffixes.get(family.type, ("",)))
    return names


def dashboard_expressions(dashboard: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, PromQL) for every panel target and templating variable of a dashboard."""

    def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for panel in items:
            yield panel
            yield from panels(panel.get("panels", []))  # rows keep collapsed panels inside

    for panel in panels(dashboard.get("panels", [])):
        for target in panel.get("targets", []):
            yield f"panel {panel.get('title')!r} target {target.get('refId')}", target["expr"]
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            query = variable["query"]
            text = query["query"] if isinstance(query, dict) else query
            yield f"variable {variable['name']!r}", grafana_variable_expression(text)


def dashboard_queries(dashboard: Mapping[str, Any]) -> Iterator[tuple[str, set[str]]]:
    """(where, metric names) for every panel target and templating variable of a dashboard."""
    for where, expr in dashboard_expressions(dashboard):
        yield where, promql_metric_names(expr)


# ----------------------------------------------------------------------------- tests: the helpers


def test_promql_metric_names_finds_selected_metrics_only() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le, node_id) (rate(ratelimiter_check_latency_seconds_bucket'
        '{node_id=~"$node", job="x"}[$__rate_interval]))) / on(instance) group_left(node) '
        "ratelimiter_node_info offset 5m > bool 1e3 and up"
    )
    assert promql_metric_names(expr) == {"ratelimiter_check_latency_seconds_bucket", "ratelimiter_node_info", "up"}
    assert grafana_query_metric_names("label_values(opctl_ticks_total{job=\"opctl\"}, subject)") == {"opctl_ticks_total"}


def test_exported_metric_names_come_from_the_registries() -> None:
    names = exported_metric_names()
    assert {
        "ratelimiter_decisions_total",
        "ratelimiter_check_latency_seconds_bucket",
        "ratelimiter_policy_version",
        "opctl_tick_duration_seconds_bucket",
        "opctl_open_tickets",
        "opctl_tickets_resolved_total",
    } <= names
    assert "ratelimiter_decisions" not in names  # a counter is only ever exposed with _total


def test_interpolation_follows_compose_rules() -> None:
    env = {"SET": "v", "EMPTY": ""}
    text = "$$x ${SET} ${EMPTY:-d} ${EMPTY-d} ${UNSET-d} ${SET:+alt} $SET"
    assert interpolate(text, env) == "$x v d  d alt v"
    with pytest.raises(MissingVariable, match="EMPTY: needed"):
        interpolate("${EMPTY:?needed}", env)


# ----------------------------------------------------------------------------- tests: the stacks


@pytest.fixture(scope="module")
def compose_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((COMPOSE / "compose-spec.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return schema


@pytest.mark.parametrize("stack", STACKS)
def test_compose_file_matches_the_compose_spec(stack: str, compose_schema: dict[str, Any]) -> None:
    validator = jsonschema.Draft7Validator(compose_schema)
    for document in (raw_stack(stack), load_stack(stack)):  # as written and as compose sees it
        errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]
        assert not errors, "\n".join(errors)


def test_schema_rejects_a_broken_compose_file(compose_schema: dict[str, Any]) -> None:
    broken = load_stack("ratelimiter")
    broken["services"]["loadgen"]["depends_on"]["limiter1"]["condition"] = "service_ready"
    broken["services"]["redis"]["restartt"] = "always"
    assert len(list(jsonschema.Draft7Validator(compose_schema).iter_errors(broken))) >= 2


@pytest.mark.parametrize("stack", STACKS)
def test_secrets_have_no_default_in_the_file(stack: str) -> None:
    text = STACKS[stack].read_text()
    references = re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)((?::?[-?+]).*?)?\}", text)
    secrets = [(name, op) for name, op in references if SECRET_NAME.search(name)]
    assert secrets, "each stack takes at least one secret from the environment"
    for name, op in secrets:
        assert op.startswith(":?"), f"{name} must be required with ${{{name}:?message}}, not {op or 'bare'}"
    with pytest.raises(MissingVariable, match="GRAFANA_ADMIN_PASSWORD"):
        load_stack(stack, {key: value for key, value in SAMPLE_ENV.items() if key != "GRAFANA_ADMIN_PASSWORD"})


@pytest.mark.parametrize("stack", STACKS)
def test_referenced_files_exist(stack: str) -> None:
    base = STACKS[stack].parent
    document = load_stack(stack)
    checked = 0
    for name, service in document["services"].items():
        for source, _ in bind_mounts(service):
            assert (base / source).exists(), f"{stack}/{name}: bind mount source {source} does not exist"
            checked += 1
        build = service.get("build")
        if build is not None:
            context = base / (build if isinstance(build, str) else build.get("context", "."))
            assert context.is_dir(), f"{stack}/{name}: build context {context} is not a directory"
            dockerfile = context / (build.get("dockerfile", "Dockerfile") if isinstance(build, dict) else "Dockerfile")
            assert dockerfile.is_file(), f"{stack}/{name}: Dockerfile {dockerfile} does not exist"
            for sources, _ in dockerfile_copies(dockerfile):
                for source in sources:
                    assert (context / source).exists(), f"{dockerfile}: COPY source {source} does not exist"
            checked += 1
        env_files = service.get("env_file", [])
        for entry in [env_files] if isinstance(env_files, str) else env_files:
            path = entry if isinstance(entry, str) else entry["path"]
            required = isinstance(entry, str) or entry.get("required", True)
            assert not required or (base / path).is_file(), f"{stack}/{name}: env_file {path} does not exist"
    for kind in ("configs", "secrets"):
        for name, spec in document.get(kind, {}).items():
            if "file" in spec:
                assert (base / spec["file"]).is_file(), f"{stack}: {kind}.{name}.file {spec['file']} does not exist"
    assert checked >= 3


@pytest.mark.parametrize("stack", STACKS)
def test_services_run_unprivileged_on_the_stack_network(stack: str) -> None:
    for name, service in services(stack).items():
        assert service.get("network_mode") != "host", f"{stack}/{name} uses the host network"
        assert not service.get("privileged", False), f"{stack}/{name} is privileged"
        assert "container_name" not in service, f"{stack}/{name} fixes its container name"
        assert not service.get("cap_add"), f"{stack}/{name} adds capabilities"
        for source, _ in bind_mounts(service):
            assert "docker.sock" not in source, f"{stack}/{name} mounts the Docker socket"


@pytest.mark.parametrize("stack", STACKS)
def test_images_are_pinned_or_built_from_the_checkout(stack: str) -> None:
    for name, service in services(stack).items():
        image = service.get("image")
        if image is None:
            assert "build" in service, f"{stack}/{name} has neither image nor build"
            assert service.get("pull_policy") == "build", f"{stack}/{name}: set pull_policy: build so no stale image runs"
            continue
        repository, _, tag = image.rpartition("/")[2].partition(":")
        assert tag and tag != "latest", f"{stack}/{name}: image {image} is not pinned to a tag"
        assert re.search(r"\d+\.\d+", tag), f"{stack}/{name}: tag {tag} of {repository} names no version"


def test_tikv_images_are_v8_5() -> None:
    for name, service in services("tikv").items():
        if name.startswith(("pd", "tikv")):
            assert re.fullmatch(r"pingcap/(pd|tikv):v8\.5\.\d+", service["image"]), f"{name}: {service['image']}"


def test_host_ports_are_loopback_and_never_clash() -> None:
    seen: dict[int, str] = {}
    for stack in STACKS:
        for name, service in services(stack).items():
            for ip, port, container_port in host_ports(service):
                assert ip == "127.0.0.1", f"{stack}/{name} publishes port {port} beyond loopback"
                assert container_port in listening_ports(service) or "image" in service, (
                    f"{stack}/{name} publishes container port {container_port} it does not listen on"
                )
                assert port not in seen, f"host port {port} of {stack}/{name} clashes with {seen[port]}"
                seen[port] = f"{stack}/{name}"
    assert len(seen) >= 8


@pytest.mark.parametrize("stack", STACKS)
def test_dependencies_exist_and_healthy_conditions_have_healthchecks(stack: str) -> None:
    all_services = services(stack)
    for name, service in all_services.items():
        for dependency, condition in depends_on(service).items():
            assert dependency in all_services, f"{stack}/{name} depends on unknown service {dependency}"
            if condition == "service_healthy":
                assert "healthcheck" in all_services[dependency], (
                    f"{stack}/{name} waits for {dependency} to be healthy, but it has no healthcheck"
                )


def test_limiter_nodes_are_distinct_and_health_checked() -> None:
    all_services = services("ratelimiter")
    limiters = {name: s for name, s in all_services.items() if "RATELIMITER_NODE_ID" in environment(s)}
    assert len(limiters) == 3
    node_ids = {environment(s)["RATELIMITER_NODE_ID"] for s in limiters.values()}
    assert len(node_ids) == 3
    for name, service in limiters.items():
        env = environment(service)
        assert env["RATELIMITER_TOKEN"] == SAMPLE_ENV["RATELIMITER_TOKEN"]
        assert env["RATELIMITER_ADVERTISE_ADDRESS"] == f"http://{name}:{env['RATELIMITER_PORT']}"
        host, port = host_port(env["RATELIMITER_REDIS_URL"] or "")
        assert host in all_services and port in listening_ports(all_services[host])
        probe = " ".join(service["healthcheck"]["test"])
        assert "curl" not in probe and "/health" in probe
        probe_port = int(re.search(r"127\.0\.0\.1:(\d+)/health", probe)[1])  # type: ignore[index]
        assert probe_port in listening_ports(service), f"{name}: healthcheck probes port {probe_port}"
        assert depends_on(service).get("redis") == "service_healthy"


def test_redis_memory_pressure_is_configured() -> None:
    args = command_args(services("ratelimiter")["redis"])
    assert flag_values(args, "--maxmemory") and flag_values(args, "--maxmemory")[0] not in ("0", "")
    assert flag_values(args, "--maxmemory-policy")[0] in ("allkeys-lru", "volatile-lru")
    assert services("ratelimiter")["redis"]["image"].startswith("redis:7.")


def test_loadgen_targets_every_limiter() -> None:
    all_services = services("ratelimiter")
    env = environment(all_services["loadgen"])
    assert command_args(all_services["loadgen"])[-2:] == ["-m", "ratelimiter_service.loadgen"]
    assert int(env["LOADGEN_RPS"] or "0") > 0
    targets = {host_port(url) for url in (env["LOADGEN_TARGETS"] or "").split(",")}
    limiters = {name for name, s in all_services.items() if "RATELIMITER_NODE_ID" in environment(s)}
    assert {host for host, _ in targets} == limiters
    for host, port in targets:
        assert port in listening_ports(all_services[host])


def prometheus_config(stack: str) -> dict[str, Any]:
    service = services(stack)["prometheus"]
    [config_file] = [source for source, target in bind_mounts(service) if target == "/etc/prometheus/prometheus.yml"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in command_args(service)
    loaded: dict[str, Any] = yaml.safe_load((STACKS[stack].parent / config_file).read_text())
    return loaded


@pytest.mark.parametrize("stack", STACKS)
def test_scrape_targets_are_services_on_ports_they_listen_on(stack: str) -> None:
    all_services = services(stack)
    jobs = {job["job_name"]: job for job in prometheus_config(stack)["scrape_configs"]}
    assert "opctl" in jobs
    for job_name, job in jobs.items():
        targets = [target for group in job["static_configs"] for target in group["targets"]]
        assert targets, f"job {job_name} scrapes nothing"
        for target in targets:
            host, port = host_port(target)
            assert host in all_services, f"job {job_name} scrapes {target}: no service {host}"
            listening = listening_ports(all_services[host])
            assert port in listening, f"job {job_name} scrapes {target}: {host} listens on {sorted(listening)}"


def test_ratelimiter_scrape_labels_each_node_with_its_id() -> None:
    all_services = services("ratelimiter")
    [job] = [j for j in prometheus_config("ratelimiter")["scrape_configs"] if j["job_name"] == "ratelimiter"]
    labelled = {}
    for group in job["static_configs"]:
        for target in group["targets"]:
            labelled[host_port(target)[0]] = group["labels"]["node_id"]
    expected = {
        name: environment(s)["RATELIMITER_NODE_ID"] for name, s in all_services.items() if "RATELIMITER_NODE_ID" in environment(s)
    }
    assert labelled == expected


def test_tikv_scrape_jobs_honor_labels() -> None:
    jobs = {job["job_name"]: job for job in prometheus_config("tikv")["scrape_configs"]}
    all_services = services("tikv")
    for job_name, prefix in (("pd", "pd"), ("tikv", "tikv")):
        assert jobs[job_name]["honor_labels"] is True
        scraped = {host_port(t)[0] for g in jobs[job_name]["static_configs"] for t in g["targets"]}
        assert scraped == {name for name in all_services if re.fullmatch(rf"{prefix}\d+", name)}


def test_tikv_cluster_wiring() -> None:
    all_services = services("tikv")
    pds = sorted(name for name in all_services if re.fullmatch(r"pd\d+", name))
    tikvs = sorted(name for name in all_services if re.fullmatch(r"tikv\d+", name))
    assert len(pds) == 3 and len(tikvs) == 3
    initial_cluster = ",".join(f"{pd}=http://{pd}:2380" for pd in pds)
    for pd in pds:
        args = command_args(all_services[pd])
        assert flag_values(args, "--name") == [pd]
        assert flag_values(args, "--initial-cluster") == [initial_cluster]
        assert flag_values(args, "--advertise-client-urls") == [f"http://{pd}:2379"]
        assert flag_values(args, "--advertise-peer-urls") == [f"http://{pd}:2380"]
        assert {2379, 2380} <= listening_ports(all_services[pd])
    for tikv in tikvs:
        service = all_services[tikv]
        args = command_args(service)
        assert flag_values(args, "--pd") == [",".join(f"{pd}:2379" for pd in pds)]
        assert flag_values(args, "--advertise-addr") == [f"{tikv}:20160"]
        assert flag_values(args, "--advertise-status-addr") == [f"{tikv}:20180"]
        assert {20160, 20180} <= listening_ports(service)
        nofile = service["ulimits"]["nofile"]
        assert min(nofile["soft"], nofile["hard"]) >= TIKV_MIN_OPEN_FILES
        assert set(depends_on(service)) == set(pds)


def test_tikv_server_configs_parse() -> None:
    pd = tomllib.loads((COMPOSE / "tikv" / "config" / "pd.toml").read_text())
    tikv = tomllib.loads((COMPOSE / "tikv" / "config" / "tikv.toml").read_text())
    assert pd["replication"]["max-replicas"] == 3
    assert tikv["storage"]["reserve-space"] == "0MB"


# ----------------------------------------------------------------------------- tests: the operator


def config_variables(config: Path) -> dict[str, str | None]:
    """`${VAR}` / `${VAR:-default}` references of an opctl config: name -> default (None: none)."""
    found: dict[str, str | None] = {}
    for name, has_default, default in re.findall(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(:-)?([^}]*)\}", config.read_text()):
        found[name] = default if has_default else None
    return found


@pytest.mark.parametrize("stack", STACKS)
def test_operator_gets_every_variable_its_config_needs(stack: str) -> None:
    env = environment(operator(stack))
    variables = config_variables(operator_config_path(stack))
    assert variables
    for name, default in variables.items():
        if default is None:
            assert env.get(name), f"{stack}/operator: its config uses ${{{name}}} without a default; set it"
        elif any(loopback in default for loopback in LOOPBACK) or name == "OPCTL_STORE":
            # The defaults point at the local lab; inside the stack they point nowhere.
            assert env.get(name), f"{stack}/operator: {name} would default to {default!r} inside the container"


@pytest.mark.parametrize("stack", STACKS)
def test_operator_config_resolves_to_stack_services(stack: str) -> None:
    all_services = services(stack)
    env = {name: value for name, value in environment(operator(stack)).items() if value is not None}
    config = operator_config_path(stack)
    assert not validate_file(config, env), "the operator's config is invalid with the stack's environment"
    loaded = load_config(config, env)
    for target_name, target in loaded.config.targets.items():
        for url in target.urls or [target.url]:
            host, port = host_port(str(url))
            assert host in all_services, f"{stack}/operator: target {target_name} dials {url}, not a service"
            assert port in listening_ports(all_services[host]), f"{stack}/operator: {host} does not listen on {port}"
    if "RATELIMITER_TOKEN" in env:
        assert env["RATELIMITER_TOKEN"] == SAMPLE_ENV["RATELIMITER_TOKEN"]
    store = PurePosixPath(env["OPCTL_STORE"])
    assert any(store.is_relative_to(target) for target in named_volume_targets(operator(stack))), (
        f"{stack}/operator: store {store} is not on a volume"
    )


@pytest.mark.parametrize("stack", STACKS)
def test_operator_image_holds_its_config_and_the_files_it_names(stack: str) -> None:
    build = operator(stack)["build"]
    context = STACKS[stack].parent / build["context"]
    copies = dockerfile_copies(context / build["dockerfile"])
    # Only copies that keep the repository layout under /app (`COPY dir/ dir/`) count.
    copied = {PurePosixPath(sources[0].rstrip("/")) for sources, dest in copies if sources == [dest]}
    config = operator_config_path(stack)
    loaded = load_config(config, {})
    named = [loaded.config.subject.context_file, loaded.config.prompts.system_file, loaded.config.prompts.ticket_file]
    for path in [config, *(loaded.resolve(p) for p in named if p)]:
        relative = PurePosixPath(path.resolve().relative_to(REPO.resolve()).as_posix())
        assert any(relative.is_relative_to(directory) for directory in copied), f"image lacks {relative} (copied: {copied})"


def test_operator_metrics_listen_beyond_loopback() -> None:
    from engine.cli import run

    envvars = {param.envvar for param in run.params}
    assert "OPCTL_METRICS_HOST" in envvars
    for stack in STACKS:
        assert environment(operator(stack)).get("OPCTL_METRICS_HOST") not in LOOPBACK


# ----------------------------------------------------------------------------- tests: Grafana


@pytest.mark.parametrize("dashboard_file", DASHBOARDS, ids=lambda p: p.stem)
def test_dashboards_show_only_metrics_our_code_exports(dashboard_file: Path) -> None:
    dashboard = json.loads(dashboard_file.read_text())
    known = exported_metric_names() | PROMETHEUS_SYNTHETIC
    queries = list(dashboard_queries(dashboard))
    assert len(queries) >= 5
    for where, names in queries:
        assert names, f"{dashboard_file.name}: {where} selects no metric"
        unknown = names - known
        assert not unknown, f"{dashboard_file.name}: {where} names metrics nobody exports: {sorted(unknown)}"


def test_dashboards_cover_the_brief() -> None:
    exprs = {
        path.stem: " ".join(t["expr"] for p in json.loads(path.read_text())["panels"] for t in p.get("targets", []))
        for path in DASHBOARDS
    }
    assert set(exprs) == {"ratelimiter", "opctl"}
    for name in (
        "ratelimiter_decisions_total",
        "ratelimiter_check_latency_seconds_bucket",
        "ratelimiter_failure_mode_decisions_total",
        "ratelimiter_script_reloads_total",
        "ratelimiter_policy_version",
        "ratelimiter_heartbeat_age_seconds",
    ):
        assert name in exprs["ratelimiter"]
    assert "histogram_quantile(0.5," in exprs["ratelimiter"] and "histogram_quantile(0.99," in exprs["ratelimiter"]
    for name in (
        "opctl_tick_duration_seconds_bucket",
        "opctl_observation_errors_total",
        "opctl_invariant_entities",
        "opctl_open_tickets",
        "opctl_tickets_opened_total",
        "opctl_tickets_resolved_total",
    ):
        assert name in exprs["opctl"]


def provisioned_datasource(stack: str) -> dict[str, Any]:
    """The Grafana datasource a stack mounts (each stack its own: its own scrape interval)."""
    [source] = [s for s, t in bind_mounts(services(stack)["grafana"]) if t == DATASOURCE_TARGET]
    [datasource] = yaml.safe_load((STACKS[stack].parent / source).read_text())["datasources"]
    return dict(datasource)


def test_dashboards_use_the_provisioned_datasource_and_are_mounted() -> None:
    uids = set()
    for stack in STACKS:
        datasource = provisioned_datasource(stack)
        uids.add(datasource["uid"])
        all_services = services(stack)
        host, port = host_port(datasource["url"])
        assert host in all_services and port in listening_ports(all_services[host])
    [uid] = uids  # the dashboards are shared: every stack names its datasource alike
    mounted = {
        (STACKS[stack].parent / source).resolve()
        for stack in STACKS
        for source, _ in bind_mounts(services(stack)["grafana"])
    }
    for path in DASHBOARDS:
        assert path.resolve() in mounted, f"{path.name} is mounted by no stack"
        dashboard = json.loads(path.read_text())
        for panel in dashboard["panels"]:
            assert panel["datasource"]["uid"] == uid, f"{path.name}: panel {panel['title']!r}"


# ----------------------------------------------------------------------------- tests: two replicas on PostgreSQL

HA_OVERRIDE = COMPOSE / "ratelimiter" / "compose.ha.yaml"
HA_ENV = {**SAMPLE_ENV, "OPCTL_PG_PASSWORD": "0123456789abcdef"}


def merged(base: Any, override: Any) -> Any:
    """`docker compose -f base -f override` for what compose.ha.yaml overrides: mappings merge
    key by key (environment, depends_on, deploy, services, volumes); other values are replaced."""
    if isinstance(base, dict) and isinstance(override, dict):
        return {key: merged(base[key], value) if key in base else value for key, value in override.items()} | {
            key: value for key, value in base.items() if key not in override
        }
    return override


def ha_stack(env: Mapping[str, str] = HA_ENV, *, interpolated: bool = True) -> dict[str, Any]:
    document = merged(raw_stack("ratelimiter"), yaml.safe_load(HA_OVERRIDE.read_text()))
    result: dict[str, Any] = interpolate(document, env) if interpolated else document
    return result


def test_ha_override_matches_the_compose_spec(compose_schema: dict[str, Any]) -> None:
    validator = jsonschema.Draft7Validator(compose_schema)
    for document in (yaml.safe_load(HA_OVERRIDE.read_text()), ha_stack(interpolated=False), ha_stack()):
        errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]
        assert not errors, "\n".join(errors)


def test_ha_operator_is_two_replicas_on_the_stacks_postgres() -> None:
    from engine.store.location import store_location

    all_services = ha_stack()["services"]
    op, postgres = all_services["operator"], all_services["postgres"]
    assert op["deploy"]["replicas"] == 2 and "container_name" not in op
    url = environment(op)["OPCTL_STORE"]
    assert url is not None and isinstance(store_location(url), str)  # a PostgreSQL URL, not a file
    parts = urlsplit(url)
    pg_env = environment(postgres)
    assert (parts.hostname, parts.port) == ("postgres", 5432)
    assert (parts.username, parts.password, parts.path) == (pg_env["POSTGRES_USER"], HA_ENV["OPCTL_PG_PASSWORD"], f"/{pg_env['POSTGRES_DB']}")
    assert pg_env["POSTGRES_PASSWORD"] == HA_ENV["OPCTL_PG_PASSWORD"]
    assert depends_on(op)["postgres"] == "service_healthy" and "healthcheck" in postgres
    assert re.fullmatch(r"postgres:\d+\.\d+-alpine", postgres["image"]) and not postgres.get("ports")
    assert "/var/lib/postgresql/data" in named_volume_targets(postgres) and "postgres-data" in ha_stack()["volumes"]
    # the rest of the operator is compose.yaml's: the same command and targets, and its config takes the URL
    base = operator("ratelimiter")
    assert op["command"] == base["command"] and depends_on(base).items() <= depends_on(op).items()
    env = {name: value for name, value in environment(op).items() if value is not None}
    config = operator_config_path("ratelimiter")
    assert not validate_file(config, env)
    assert load_config(config, env).store_path == url


def test_ha_password_is_required_and_never_defaulted() -> None:
    text = HA_OVERRIDE.read_text()
    references = re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)((?::?[-?+]).*?)?\}", text)
    assert references and all(op.startswith(":?") for name, op in references if SECRET_NAME.search(name))
    with pytest.raises(MissingVariable, match="OPCTL_PG_PASSWORD"):
        ha_stack(SAMPLE_ENV)
