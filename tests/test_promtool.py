"""Prometheus' own tools over what we ship for Prometheus: every config (compose stacks and the
TiKV lab's generated one) through `promtool check config`, the alert rules through their unit
tests, every PromQL expression (configs/*.yaml, Grafana dashboards) through Prometheus' parser,
and each Grafana datasource's `timeInterval` equal to its stack's scrape interval.

Live scrapes pass `promtool check metrics` where they are served: tests/ratelimiter/test_metrics.py
(a limiter node), tests/test_cli_run.py (`opctl run --metrics-port`), tests/tikv/test_pdsim_metrics.py
(a simulated TiKV and PD)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from engine.config.validate import load_config
from engine.lab.prometheus_server import lab_config, write_config
from engine.lab.spec import load_lab
from tests.promtool import check_config, expression_problems, promtool, requires_promtool
from tests.test_compose import STACKS, bind_mounts, dashboard_expressions, prometheus_config, provisioned_datasource, services

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs").glob("*.yaml"))
DASHBOARDS = sorted((REPO / "compose" / "grafana" / "dashboards").glob("*.json"))
TIKV_LAB = REPO / "subjects" / "tikv" / "lab.yaml"

def prometheus_config_file(stack: str) -> Path:
    [source] = [s for s, target in bind_mounts(services(stack)["prometheus"]) if target == "/etc/prometheus/prometheus.yml"]
    return (STACKS[stack].parent / source).resolve()


@requires_promtool
@pytest.mark.parametrize("stack", STACKS)
def test_compose_prometheus_configs_pass_promtool(stack: str) -> None:
    check_config(prometheus_config_file(stack))


def test_every_rule_file_a_stack_loads_is_mounted_beside_its_config() -> None:
    for stack in STACKS:
        mounted = {target for _, target in bind_mounts(services(stack)["prometheus"])}
        for rule_file in prometheus_config(stack).get("rule_files", []):
            assert f"/etc/prometheus/{rule_file}" in mounted, f"{stack}: {rule_file} is not mounted into the container"


@requires_promtool
def test_the_tikv_labs_generated_config_passes_promtool(tmp_path: Path) -> None:
    spec = load_lab(TIKV_LAB, {})
    settings = spec.process("prometheus").prometheus
    assert settings is not None
    config = lab_config(spec.base_dir / settings.config, settings.targets, settings.scrape_interval)
    check_config(write_config(config, tmp_path / "prometheus.yml"))
    # One source of truth: the lab scrapes compose's jobs with compose's relabelling.
    compose = prometheus_config("tikv")
    assert [job["job_name"] for job in config["scrape_configs"]] == [job["job_name"] for job in compose["scrape_configs"]]
    for generated, deployed in zip(config["scrape_configs"], compose["scrape_configs"]):
        assert {k: v for k, v in generated.items() if k != "static_configs"} == {k: v for k, v in deployed.items() if k != "static_configs"}


@requires_promtool
def test_the_tikv_alert_rules_pass_their_unit_tests() -> None:
    tests = REPO / "compose" / "tikv" / "config" / "alerts.test.yml"
    done = promtool("test", "rules", str(tests))
    assert done.returncode == 0, done.stdout + done.stderr
    tested = {case["alertname"] for test in yaml.safe_load(tests.read_text())["tests"] for case in test["alert_rule_test"]}
    rules = yaml.safe_load((tests.parent / "alerts.yml").read_text())
    assert tested == {rule["alert"] for group in rules["groups"] for rule in group["rules"]}  # each alert has a test


def config_queries() -> Iterator[tuple[str, str]]:
    for path in CONFIGS:
        for name, observation in load_config(path, {}).config.observations.items():
            if observation.prometheus is not None:
                yield f"{path.name}: observation {name}", observation.prometheus.query


@requires_promtool
def test_every_promql_expression_we_ship_parses_in_prometheus(tmp_path: Path) -> None:
    expressions = dict(config_queries())
    assert len(expressions) >= 3  # the TiKV config's region_health, store_space, store_p99
    for path in DASHBOARDS:
        for where, expr in dashboard_expressions(json.loads(path.read_text())):
            expressions[f"{path.name}: {where}"] = expr
    assert len(expressions) > 20
    assert expression_problems(expressions, tmp_path) == []


@requires_promtool
def test_a_broken_expression_is_reported_with_its_place(tmp_path: Path) -> None:
    problems = expression_problems({"a.yaml: observation x": "sum(rate(x[1m]) by (le)", "fine": "up"}, tmp_path)
    assert problems == ["a.yaml: observation x: could not parse expression: 1:17: parse error: unexpected <by> in aggregation"]


@pytest.mark.parametrize("stack", STACKS)
def test_each_stacks_datasource_interval_is_its_scrape_interval(stack: str) -> None:
    # Grafana's $__rate_interval is 4 x timeInterval: with a shorter timeInterval than the real
    # scrape interval, rate windows hold one sample or none and panels lose points.
    assert provisioned_datasource(stack)["jsonData"]["timeInterval"] == prometheus_config(stack)["global"]["scrape_interval"]
