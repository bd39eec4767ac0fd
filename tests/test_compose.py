"""compose.yml: valid for Debian's docker-compose (v1), complete, and exposed on loopback only.

No Docker engine runs in the tests, so the stack is validated, never started.
"""

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "compose.yml"

INFRASTRUCTURE = {"postgres", "mongodb", "mosquitto", "otel-collector", "jaeger"}
PLATFORM = {"gateway", "relay", "scheduler", "consumer-payments", "consumer-subscriptions", "consumer-draws"}
# The collector's image has no shell or HTTP client to run a probe with.
WITHOUT_HEALTHCHECK = {"otel-collector"}


def _docker_compose() -> str | None:
    """Return the docker-compose binary, installing Debian's package as root when it is missing."""
    found = shutil.which("docker-compose")
    if found or os.geteuid() != 0 or not shutil.which("apt-get"):
        return found

    command = ["apt-get", "install", "-y", "-q", "docker-compose"]
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if subprocess.run(command, env=environment, capture_output=True, timeout=600).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=environment, capture_output=True, timeout=600)
        subprocess.run(command, env=environment, capture_output=True, timeout=600)
    return shutil.which("docker-compose")


@pytest.fixture(scope="module")
def validated() -> dict[str, Any]:
    """Return the configuration as `docker-compose config` resolves it."""
    binary = _docker_compose()
    if binary is None:
        pytest.skip("docker-compose is not installed and could not be installed (needs root and apt-get)")

    # Only PATH and HOME: the defaults in compose.yml must be enough without a .env file.
    environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp")}
    result = subprocess.run(
        [binary, "--project-directory", str(ROOT), "-f", str(COMPOSE_FILE), "config"],
        env=environment, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    document: dict[str, Any] = yaml.safe_load(result.stdout)
    return document


@pytest.fixture(scope="module")
def source() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return document


def test_compose_services_complete(validated: dict[str, Any]) -> None:
    assert set(validated["services"]) == INFRASTRUCTURE | PLATFORM


def test_compose_v1_keys_absent(source: dict[str, Any]) -> None:
    # Debian's docker-compose 1.29 rejects these newer keys.
    assert not {"name", "include"} & set(source)
    assert not [name for name, service in source["services"].items() if "develop" in service]


def test_compose_health_checks(validated: dict[str, Any]) -> None:
    missing = {name for name, service in validated["services"].items() if "healthcheck" not in service}

    assert missing == WITHOUT_HEALTHCHECK


def test_compose_one_image(validated: dict[str, Any]) -> None:
    services = validated["services"]
    builds = {(services[name]["build"]["context"], services[name]["build"].get("dockerfile")) for name in PLATFORM}
    images = {services[name]["image"] for name in PLATFORM}

    assert len(builds) == 1
    assert Path(next(iter(builds))[0]) == ROOT
    assert len(images) == 1
    assert (ROOT / "Dockerfile").is_file()


def test_compose_components_commands(validated: dict[str, Any]) -> None:
    commands = {name: validated["services"][name]["command"] for name in PLATFORM}

    assert commands == {
        "gateway": ["gateway"],
        "relay": ["relay"],
        "scheduler": ["scheduler"],
        "consumer-payments": ["consumer", "payments"],
        "consumer-subscriptions": ["consumer", "subscriptions"],
        "consumer-draws": ["consumer", "draws"],
    }


def test_compose_platform_waits(validated: dict[str, Any]) -> None:
    for name in PLATFORM:
        depends_on = validated["services"][name]["depends_on"]
        assert depends_on["postgres"]["condition"] == "service_healthy", name
        assert depends_on["mosquitto"]["condition"] == "service_healthy", name


def _port(entry: str | dict[str, Any]) -> tuple[str | None, int]:
    """Return (host address, container port) of a published port, short or long syntax."""
    if isinstance(entry, dict):
        return entry.get("host_ip"), int(entry["target"])
    parts = str(entry).split(":")
    host = parts[0] if len(parts) == 3 else None
    return host, int(parts[-1].split("/")[0])


def test_compose_ports_loopback(validated: dict[str, Any]) -> None:
    published = [
        (name, *_port(entry))
        for name, service in validated["services"].items()
        for entry in service.get("ports", [])
    ]

    assert published
    assert [entry for entry in published if entry[1] != "127.0.0.1"] == []
    assert not [entry for entry in published if entry[2] in (1883, 5432, 27017)]


def test_compose_telemetry_configured(validated: dict[str, Any]) -> None:
    for name in PLATFORM:
        environment = validated["services"][name]["environment"]
        assert environment["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector:4318", name
        assert environment["OTEL_SERVICE_NAME"] == f"festival-{name}", name


def _bind_source(volume: str | dict[str, Any]) -> Path | None:
    """Return the host path of a bind mount (short or long syntax), None for a named volume."""
    if isinstance(volume, dict):
        return Path(volume["source"]) if volume.get("type") == "bind" else None
    source = str(volume).split(":")[0]
    return Path(source) if source.startswith("/") else None


def test_compose_config_files_exist(validated: dict[str, Any]) -> None:
    sources = [_bind_source(volume) for service in validated["services"].values() for volume in service.get("volumes", [])]
    mounted = [path for path in sources if path is not None]

    assert mounted
    assert [path for path in mounted if not path.is_file()] == []


def _rendered_mosquitto_config() -> str:
    return (ROOT / "broker" / "mosquitto.conf").read_text().format(
        run_user="mosquitto",
        password_file="/mosquitto/data/passwords",
        acl_file="/mosquitto/config/mosquitto.acl",
        persistence_dir="/mosquitto/data",
        port=1883,
        ws_port=9001,
        bind_address="0.0.0.0",
    )


def test_mosquitto_config_in_sync() -> None:
    compose_config = (ROOT / "broker" / "compose" / "mosquitto.conf").read_text()

    assert compose_config == _rendered_mosquitto_config()


def test_mosquitto_acl_in_sync() -> None:
    template = (ROOT / "broker" / "mosquitto.acl").read_text().replace("{topic_root}", "festival/v1")

    assert (ROOT / "broker" / "compose" / "mosquitto.acl").read_text() == template


def test_collector_config_pipelines() -> None:
    config = yaml.safe_load((ROOT / "compose.otel-collector.yaml").read_text())
    pipelines = config["service"]["pipelines"]

    assert pipelines["traces"]["exporters"] == ["otlp/jaeger"]
    assert "prometheus" in pipelines["metrics"]["exporters"]
    assert config["exporters"]["otlp/jaeger"]["endpoint"] == "jaeger:4317"
