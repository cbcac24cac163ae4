"""A private PostgreSQL cluster and a private RabbitMQ node for one chaos run.

The chaos run restarts its database server and its broker, so it never touches the machine's
shared ones (other people's tests run on them): it makes its own in a temporary directory, on
free ports, and removes them at the end whatever happened.

- PostgreSQL: `initdb` into `<tmp>/pg/data` as the `postgres` OS user (`runuser -u postgres --`
  when we are root; PostgreSQL refuses to run as root), trust authentication on 127.0.0.1 and a
  socket in the temporary directory; started, restarted (`pg_ctl restart -m fast`: every session
  is terminated, in-flight transactions roll back) and stopped with `pg_ctl`.
- RabbitMQ: `rabbitmq-server` from /usr/lib/rabbitmq/bin (not the /usr/sbin wrapper, which
  switches to the `rabbitmq` user and its /var/lib/rabbitmq) with its own node name
  `chaos-<pid>@localhost`, AMQP and distribution ports, mnesia and log directories, config file,
  enabled-plugins file (none) and env file (so /etc/rabbitmq/rabbitmq-env.conf's NODENAME does
  not apply); HOME is a directory of its own, so the server creates its own Erlang cookie there
  and `rabbitmqctl -n chaos-<pid>@localhost` run with the same HOME authenticates with it. The
  node registers with the machine's epmd (a name, nothing more). Restart = `rabbitmqctl stop`
  (or SIGKILL of the VM with `mode="kill"`) and a new `rabbitmq-server` on the same directories:
  durable queues and persistent messages survive.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port() -> int:
    """A free port *below* the kernel's ephemeral range. The run's servers go away and come back
    on the same port while their clients keep reconnecting; a port the kernel may also hand out
    as a client's source port can be taken meanwhile (a connection to 127.0.0.1:P from source
    port P connects to itself), and the server then cannot bind it again."""
    low, _high = _ephemeral_range()
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randrange(max(1024, low - 12000), low)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    with socket.socket() as sock:  # pragma: no cover - a very busy machine
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def who_holds(port: int) -> str:
    """`ss` lines for a port (diagnostics when a restart cannot bind it)."""
    try:
        out = subprocess.run(["ss", "-tanp"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return "\n".join(line for line in out.splitlines() if f":{port} " in line)[:2000]


def wait_for_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def make_workdir(parent: Path | None = None, prefix: str = "mailroom-chaos-") -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent)).resolve()
    path.chmod(0o755)  # the postgres user must reach its data directory inside
    return path


# --- PostgreSQL ---------------------------------------------------------------------------------


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
                   key=lambda p: [int(x) for x in p.split("/")[4].split(".") if x.isdigit()])
    if found:
        return found[-1]
    path = shutil.which(name)
    if path:
        return path
    raise FileNotFoundError(f"{name} not found (install postgresql)")


class PrivatePostgres:
    """One PostgreSQL cluster of our own; `url(db)` gives a database URL on it."""

    def __init__(self, root: Path, port: int | None = None):
        self.root = root / "pg"
        self.data = self.root / "data"
        self.socket_dir = self.root / "run"
        self.logfile = self.root / "postgres.log"
        self.port = port or free_port()
        self.as_root = os.geteuid() == 0
        self.started = False

    def _run(self, argv: list[str], timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
        if self.as_root:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd="/")
        if check and result.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}\n"
                               f"{self.log_tail()}")
        return result

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.logfile.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def init(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        if self.as_root:
            user = pwd.getpwnam("postgres")
            for path in (self.root, self.socket_dir):
                os.chown(path, user.pw_uid, user.pw_gid)
        self._run([_pg_bin("initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                   "--locale=C", "--no-sync"])
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(f"""
# mailroom chaos run: a private cluster
port = {self.port}
listen_addresses = '127.0.0.1'
unix_socket_directories = '{self.socket_dir}'
max_connections = 500
shared_buffers = 128MB
log_min_messages = warning
log_line_prefix = '%m [%p] %d '
""")

    def start(self, timeout: float = 60) -> None:
        self._run([_pg_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.logfile), "-w", "-t", str(int(timeout)),
                   "start"], timeout=timeout + 10)
        self.started = True
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = subprocess.run([_pg_bin("pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)],
                                    capture_output=True)
            if result.returncode == 0:
                return
            time.sleep(0.1)
        raise TimeoutError(f"private PostgreSQL not ready on {self.port}:\n{self.log_tail()}")

    def restart(self, mode: str = "fast", timeout: float = 60) -> None:
        """`pg_ctl restart -m fast`: sessions are terminated, open transactions roll back."""
        self._run([_pg_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.logfile), "-m", mode, "-w",
                   "-t", str(int(timeout)), "restart"], timeout=timeout + 10)
        self.wait_ready(timeout)

    def stop_fast(self, timeout: float = 60) -> None:
        """`pg_ctl stop -m fast` (half of a restart: `start()` brings it back)."""
        self._run([_pg_bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "-t", str(int(timeout)), "stop"],
                  timeout=timeout + 10)

    def stop(self) -> None:
        if not self.started:
            return
        result = self._run([_pg_bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "-t", "30", "stop"],
                           timeout=45, check=False)
        if result.returncode != 0 and (self.data / "postmaster.pid").exists():
            self._run([_pg_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "-t", "30", "stop"],
                      timeout=45, check=False)
        self.started = False

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        from sqlalchemy import create_engine, text

        engine = create_engine(f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/postgres",
                               isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as connection:
                connection.execute(text(f'CREATE DATABASE "{name}"'))
        finally:
            engine.dispose()
        return self.url(name)


# --- RabbitMQ -----------------------------------------------------------------------------------


class PrivateRabbit:
    """One RabbitMQ node of our own (no plugins); `amqp_uri` is guest's URI on its port."""

    def __init__(self, root: Path, name: str | None = None):
        self.root = root / "rabbit"
        self.home = self.root / "home"
        self.nodename = f"{name or f'chaos-{os.getpid()}'}@localhost"
        self.port = free_port()
        self.dist_port = free_port()
        while self.dist_port == self.port:
            self.dist_port = free_port()
        self.process: subprocess.Popen | None = None
        self.pid_file = self.root / "rabbit.pid"
        self.starts = 0

    @property
    def amqp_uri(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
        env.update({
            "HOME": str(self.home),  # the Erlang cookie lives here, for the server and for rabbitmqctl
            "RABBITMQ_NODENAME": self.nodename,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.root / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.root / "log"),
            "RABBITMQ_CONFIG_FILE": str(self.root / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.root / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.root / "enabled_plugins"),
            "RABBITMQ_CONF_ENV_FILE": str(self.root / "rabbitmq-env.conf"),
            "RABBITMQ_PID_FILE": str(self.pid_file),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        })
        return env

    def init(self) -> None:
        for path in (self.root, self.home, self.root / "mnesia", self.root / "log"):
            path.mkdir(parents=True, exist_ok=True)
        (self.root / "rabbitmq.conf").write_text(
            f"listeners.tcp.1 = 127.0.0.1:{self.port}\n"
            "loopback_users = none\n"
            "log.console = false\n"
            "log.file.level = warning\n")
        (self.root / "advanced.config").write_text("[].\n")
        (self.root / "enabled_plugins").write_text("[].\n")
        (self.root / "rabbitmq-env.conf").write_text("# mailroom chaos run: nothing from /etc/rabbitmq\n")

    def ctl(self, *args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run([str(RABBIT_BIN / "rabbitmqctl"), "-n", self.nodename, *args], env=self.env,
                                capture_output=True, text=True, timeout=timeout, cwd=str(self.root))
        if check and result.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n"
                               f"{result.stderr}")
        return result

    def start(self, timeout: float = 90) -> None:
        log = open(self.root / f"server-{self.starts}.out", "wb")  # noqa: SIM115 - the server owns it
        self.starts += 1
        self.process = subprocess.Popen([str(RABBIT_BIN / "rabbitmq-server")], env=self.env, stdout=log,
                                        stderr=subprocess.STDOUT, cwd=str(self.root), start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"rabbitmq-server exited with {self.process.returncode}:\n{self.log_tail()}")
            result = self.ctl("await_startup", "--timeout", "10", timeout=30, check=False)
            if result.returncode == 0:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"private RabbitMQ did not start:\n{result.stderr}\n{self.log_tail()}")
            time.sleep(0.5)
        wait_for_port(self.port, 30)

    def log_tail(self, chars: int = 3000) -> str:
        outs = sorted(self.root.glob("server-*.out"))
        text = outs[-1].read_text(errors="replace") if outs else ""
        return text[-chars:]

    def beam_pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def stop(self, mode: str = "stop", timeout: float = 60) -> None:
        """`stop`: rabbitmqctl stop (the broker closes every connection, then halts); `kill`:
        SIGKILL to the Erlang VM (a crash: only what was fsynced survives)."""
        if self.process is None:
            return
        if mode == "stop":
            result = self.ctl("stop", str(self.pid_file), timeout=timeout, check=False)
            if result.returncode != 0:
                mode = "kill"
        if mode == "kill":
            pid = self.beam_pid()
            if pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        # the VM's helpers (erl_child_setup, inet_gethost) belong to the server's session
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process = None
        for _ in range(100):  # the port is free again before a restart binds it
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    time.sleep(0.1)
            except OSError:
                break

    def restart(self, mode: str = "stop") -> None:
        self.stop(mode)
        self.start()

    def queues(self) -> list[dict]:
        """Every queue of the default vhost: name, messages (ready + unacknowledged), consumers."""
        result = self.ctl("list_queues", "-q", "--formatter", "json", "name", "messages", "messages_ready",
                          "messages_unacknowledged", "consumers", timeout=60)
        return json.loads(result.stdout or "[]")

    def connections(self) -> list[dict]:
        result = self.ctl("list_connections", "-q", "--formatter", "json", "name", "user", timeout=60, check=False)
        try:
            return json.loads(result.stdout or "[]")
        except ValueError:
            return []

    def close_all_connections(self, reason: str = "chaos: closed by the broker") -> None:
        self.ctl("close_all_connections", reason)
