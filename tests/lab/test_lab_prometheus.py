"""A lab's `prometheus` process: its config generated from a deployment's own (only the targets and
the scrape interval differ), its problems located in the lab file, and a clear refusal to start
when no `prometheus` binary is installed."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from engine.errors import LabError
from engine.lab import supervisor
from engine.lab.models import LabTarget
from engine.lab.prometheus_server import lab_config, prometheus_duration
from engine.lab.spec import load_lab, validate_lab
from tests.lab.demo_support import TIKV, lab_env, opctl

DEPLOYED = """\
global: {scrape_interval: 15s, scrape_timeout: 10s, evaluation_interval: 15s}
rule_files: [rules.yml]
scrape_configs:
  - job_name: app
    honor_labels: true
    relabel_configs: [{source_labels: [__address__], target_label: host}]
    static_configs:
      - targets: ["app1:8080", "app2:8080"]
        labels: {team: core}
  - job_name: self
    scrape_interval: 30s
    static_configs: [{targets: ["operator:9464"]}]
"""


@pytest.fixture
def deployed(tmp_path: Path) -> Path:
    path = tmp_path / "deploy" / "prometheus.yml"
    path.parent.mkdir()
    path.write_text(DEPLOYED)
    return path


def test_only_targets_and_the_scrape_interval_change(deployed: Path) -> None:
    config = lab_config(deployed, {"app": ["127.0.0.1:1", "127.0.0.1:2"], "self": []}, 1.0)
    source = yaml.safe_load(DEPLOYED)
    assert config["global"] == {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "15s"}
    app, own = config["scrape_configs"]
    assert app == {**source["scrape_configs"][0], "static_configs": [{"targets": ["127.0.0.1:1", "127.0.0.1:2"], "labels": {"team": "core"}}]}
    assert own == {"job_name": "self", "scrape_interval": "1s", "static_configs": [{"targets": []}]}
    assert config["rule_files"] == [str(deployed.parent / "rules.yml")]  # still found from the state dir
    assert source == yaml.safe_load(deployed.read_text())  # the deployment's file is untouched


def test_a_labelled_target_gets_a_group_of_its_own(deployed: Path) -> None:
    named = LabTarget(target="127.0.0.1:3", labels={"instance": "app3:8080"})
    config = lab_config(deployed, {"app": ["127.0.0.1:1", named], "self": [named]}, 1.0)
    app, own = config["scrape_configs"]
    assert app["static_configs"] == [
        {"targets": ["127.0.0.1:1"], "labels": {"team": "core"}},
        {"targets": ["127.0.0.1:3"], "labels": {"team": "core", "instance": "app3:8080"}},
    ]
    assert own["static_configs"] == [{"targets": ["127.0.0.1:3"], "labels": {"instance": "app3:8080"}}]


@pytest.mark.parametrize(
    ("targets", "message"),
    [
        ({"app": []}, "job 'self' of .* has no lab targets; list them under `targets` \\(\\[\\] scrapes nothing\\)"),
        ({"app": [], "self": [], "ghost": []}, "has no job named 'ghost'"),
    ],
)
def test_every_job_and_only_its_jobs_get_targets(deployed: Path, targets: dict[str, list[str]], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        lab_config(deployed, targets, 1.0)


def test_what_a_lab_cannot_replace_is_named(tmp_path: Path) -> None:
    path = tmp_path / "prometheus.yml"
    path.write_text("scrape_configs:\n  - job_name: a\n    static_configs: [{targets: [x:1]}, {targets: [y:1], labels: {n: y}}]\n")
    with pytest.raises(ValueError, match="job 'a' of .* has 2 target groups with labels of their own"):
        lab_config(path, {"a": []}, 1.0)
    path.write_text("scrape_configs:\n  - job_name: a\n    file_sd_configs: [{files: [t.json]}]\n")
    with pytest.raises(ValueError, match="job 'a' of .* uses file_sd_configs; a lab can only replace static_configs"):
        lab_config(path, {"a": []}, 1.0)
    with pytest.raises(ValueError, match="cannot read the Prometheus config"):
        lab_config(tmp_path / "missing.yml", {}, 1.0)


def test_durations_are_written_as_prometheus_reads_them() -> None:
    assert [prometheus_duration(s) for s in (1.0, 1.5, 2.0, 0.25)] == ["1s", "1500ms", "2s", "250ms"]


def test_a_lab_file_problem_is_located(tmp_path: Path, deployed: Path) -> None:
    lab = tmp_path / "lab.yaml"
    lab.write_text(
        "version: 1\nname: p\nstate_dir: state\nprocesses:\n  - name: prometheus\n    prometheus:\n"
        f"      port: 9\n      config: {deployed}\n      targets: {{app: []}}\n"
    )
    [problem] = validate_lab(lab, {})
    assert (problem.line, problem.path) == (7, ("processes", 0, "prometheus"))
    assert "job 'self' of" in problem.message and "has no lab targets" in problem.message


def test_without_prometheus_installed_the_lab_refuses_and_names_the_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    env = {**lab_env(TIKV, tmp_path / "state"), "PATH": str(empty)}
    env.pop("OPCTL_PROMETHEUS", None)
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.delenv("OPCTL_PROMETHEUS", raising=False)
    spec = load_lab(TIKV.parent.parent / "subjects" / "tikv" / "lab.yaml", env)
    with pytest.raises(LabError, match=r"no `prometheus` binary is on PATH: install Debian's `prometheus` package"):
        supervisor.up(spec, env=env)
    assert supervisor.read_records(spec) == []  # nothing was started
    done = opctl("lab", "up", str(TIKV), env=env)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "apt-get install prometheus" in done.stderr
    assert not (tmp_path / "state" / "lab.json").exists()
