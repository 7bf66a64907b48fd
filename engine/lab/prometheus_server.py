"""A real Prometheus for labs and tests, scraping loopback targets with a deployment's own config.

    config = lab_config(Path("compose/x/prometheus.yml"), {"app": ["127.0.0.1:18080"]}, 1.0)
    argv = command(find_prometheus(), config_file, data_dir, port)

`lab_config` keeps everything of the deployment's config (jobs, relabelling, rules) and changes
only what a lab must: each job's targets and the scrape interval. The binary is Debian's
`prometheus` package (or $OPCTL_PROMETHEUS); without it a lab refuses to start and says so.
"""

from __future__ import annotations

import copy
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import httpx
import yaml

from engine.durations import parse_duration
from engine.errors import LabError

PACKAGE = "prometheus"  # Debian's package: /usr/bin/prometheus and /usr/bin/promtool
# Service discovery a lab cannot replace with its own targets.
_DISCOVERY_KEYS = ("file_sd_configs", "dns_sd_configs", "http_sd_configs", "kubernetes_sd_configs", "consul_sd_configs")


def find_prometheus() -> str:
    """Path of a `prometheus` binary: $OPCTL_PROMETHEUS, then PATH; LabError naming the package."""
    explicit = os.environ.get("OPCTL_PROMETHEUS")
    if explicit:
        return explicit
    found = shutil.which("prometheus")
    if found is None:
        raise LabError(
            "this lab runs a real Prometheus, and no `prometheus` binary is on PATH: install Debian's "
            f"`{PACKAGE}` package (`apt-get install {PACKAGE}`, as .ci/run does) or set OPCTL_PROMETHEUS "
            "to the binary"
        )
    return found


def prometheus_duration(seconds: float) -> str:
    """Seconds as a Prometheus duration: whole milliseconds ("1500ms"), whole seconds as "2s"."""
    millis = round(seconds * 1000)
    if millis <= 0:
        raise ValueError(f"a scrape interval must be at least 1ms, got {seconds:g}s")
    return f"{millis // 1000}s" if millis % 1000 == 0 else f"{millis}ms"


def _seconds(text: Any) -> float | None:
    """A Prometheus duration ("15s", "1m", "500ms") in seconds; None when absent or unreadable."""
    if not isinstance(text, str):
        return None
    try:
        return parse_duration(text)
    except ValueError:
        return None


class Labelled(Protocol):
    """A target with labels of its own (engine.lab.models.LabTarget)."""

    target: str
    labels: Mapping[str, str]


Target = str | Labelled


def lab_config(source: Path, targets: Mapping[str, Sequence[Target]], scrape_interval: float) -> dict[str, Any]:
    """The deployment config at `source` with each job's targets replaced by `targets[job]` and
    every scrape at `scrape_interval` seconds; ValueError naming the job when it cannot be done.
    A labelled target gets a target group of its own, e.g. to keep the deployment's `instance`
    names (`app1:8080`) for a lab process listening on 127.0.0.1."""
    try:
        document = yaml.safe_load(source.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"cannot read the Prometheus config {source}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"the Prometheus config {source} is not valid YAML: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("scrape_configs"), list):
        raise ValueError(f"the Prometheus config {source} has no `scrape_configs` list")
    config = copy.deepcopy(document)
    interval = prometheus_duration(scrape_interval)
    config["global"] = _with_interval(dict(config.get("global") or {}), scrape_interval, interval)
    jobs = []
    for job in config["scrape_configs"]:
        name = job.get("job_name") if isinstance(job, dict) else None
        if not isinstance(name, str):
            raise ValueError(f"{source}: every scrape config needs a `job_name`")
        if name not in targets:
            raise ValueError(f"job '{name}' of {source} has no lab targets; list them under `targets` ([] scrapes nothing)")
        discovery = [key for key in _DISCOVERY_KEYS if key in job]
        if discovery:
            raise ValueError(f"job '{name}' of {source} uses {discovery[0]}; a lab can only replace static_configs")
        groups = job.get("static_configs") or [{}]
        if len(groups) > 1:
            raise ValueError(
                f"job '{name}' of {source} has {len(groups)} target groups with labels of their own; "
                "a lab can only replace the targets of a job with one group"
            )
        job = _with_interval(dict(job), scrape_interval, interval) if "scrape_interval" in job else dict(job)
        job["static_configs"] = _groups(targets[name], dict(groups[0].get("labels") or {}))
        jobs.append(job)
    unknown = sorted(set(targets) - {job["job_name"] for job in jobs})
    if unknown:
        raise ValueError(f"{source} has no job named {', '.join(repr(n) for n in unknown)}")
    config["scrape_configs"] = jobs
    # Rule files are relative to the deployment's config; the generated one lives elsewhere.
    if config.get("rule_files"):
        config["rule_files"] = [str((source.parent / pattern).resolve()) for pattern in config["rule_files"]]
    return config


def _groups(targets: Sequence[Target], labels: dict[str, str]) -> list[dict[str, Any]]:
    """Plain targets in one group with the deployment's labels; each labelled one in its own."""
    plain = [t for t in targets if isinstance(t, str)]
    groups: list[dict[str, Any]] = []
    if plain or all(isinstance(t, str) for t in targets):
        groups.append({"targets": plain, **({"labels": labels} if labels else {})})
    for target in targets:
        if not isinstance(target, str):
            groups.append({"targets": [target.target], "labels": {**labels, **target.labels}})
    return groups


def _with_interval(section: dict[str, Any], seconds: float, text: str) -> dict[str, Any]:
    section["scrape_interval"] = text
    timeout = _seconds(section.get("scrape_timeout"))
    if timeout is not None and timeout > seconds:  # Prometheus refuses a timeout above the interval
        section["scrape_timeout"] = text
    return section


def write_config(config: Mapping[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("# Generated by opctl's lab; edit the deployment's config instead.\n" + yaml.safe_dump(dict(config), sort_keys=False))
    return path


def command(binary: str, config_file: Path, data_dir: Path, port: int) -> list[str]:
    return [
        binary,
        f"--config.file={config_file}",
        f"--storage.tsdb.path={data_dir}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--web.enable-lifecycle",  # POST /-/reload re-reads the config: tests move targets with it
    ]


def scraped_every_target(base_url: str, expected: int, timeout: float = 0.5) -> bool:
    """Prometheus is ready, knows its `expected` targets (it discovers them a moment after it
    starts) and has scraped every one at least once (up or down)."""
    try:
        if not httpx.get(f"{base_url}/-/ready", timeout=timeout).is_success:
            return False
        reply = httpx.get(f"{base_url}/api/v1/targets", params={"state": "active"}, timeout=timeout).json()
    except (httpx.HTTPError, ValueError):
        return False
    active = reply.get("data", {}).get("activeTargets", []) if isinstance(reply, dict) else []
    return len(active) >= expected and all(t.get("health") in ("up", "down") for t in active)

