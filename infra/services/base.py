"""What every local service shares: a state folder, a pid file, a log, a protocol check.

A service is judged by its own protocol (PostgreSQL ``SELECT 1``, Redis ``PING``, a Kafka
metadata request, the HTTP health endpoints), never by an open port alone: something else
listening on a service's port is reported as such, not used. A real service that already
answers at its configured address is used as it is and never started or stopped by us;
one we started is remembered by its pid file, so ``down`` stops only what ``up`` started
and a second ``up`` is a no-op.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from config import Settings
from infra.errors import ServiceError


@dataclass(frozen=True)
class Status:
    name: str
    address: str
    reachable: bool  # answers its protocol
    managed: bool  # started by us (pid file alive)
    pid: int | None
    log: Path
    problem: str = ""  # why it does not answer (empty when it does, or when nothing listens)

    def line(self) -> str:
        state = "up" if self.reachable else ("WRONG" if self.problem else "down")
        owner = f"pid {self.pid}" if self.managed else ("external" if self.reachable else "-")
        detail = f"  {self.problem}" if self.problem else ""
        return f"{self.name:<18} {state:<5} {self.address:<28} {owner:<12} log: {self.log}{detail}"


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True if something accepts TCP connections at ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child still answers kill(0); treat it as dead
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return True


class Service(ABC):
    """A local service started in the background and probed over TCP."""

    name: str
    protocol: str = ""  # what should answer, for messages ("Redis", "PostgreSQL", ...)

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.home = settings.platform.state_dir / self.name
        self.log_path = settings.platform.state_dir / "logs" / f"{self.name}.log"
        self.pid_path = self.home / f"{self.name}.pid"

    @property
    @abstractmethod
    def host(self) -> str: ...

    @property
    @abstractmethod
    def port(self) -> int: ...

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def listening(self) -> bool:
        """Something accepts TCP connections at the address (not necessarily this service)."""
        return port_open(self.host, self.port)

    def handshake(self) -> None:
        """Talk the service's protocol once; raise if what answers is not the service."""

    def check(self) -> str:
        """Empty when the service answers its protocol; otherwise what is wrong."""
        if not self.listening():
            return "nothing listens"
        try:
            self.handshake()
            return ""
        except Exception as exc:  # noqa: BLE001 (any failure to speak the protocol is the answer)
            return " ".join(f"{type(exc).__name__}: {exc}".split())[:300]

    def reachable(self) -> bool:
        """The service answers its protocol at its address."""
        return self.check() == ""

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_path.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if pid_alive(pid) else None

    def status(self) -> Status:
        pid = self.pid()
        problem = self.check()
        shown = "" if problem == "nothing listens" else self._not_the_service(problem) if problem else ""
        return Status(self.name, self.address, not problem, pid is not None, pid, self.log_path, shown)

    def _not_the_service(self, problem: str) -> str:
        return f"something answers at {self.address}, but not as {self.protocol or self.name} ({problem})"

    def up(self, timeout: float = 120.0) -> str:
        """Start the service unless it already answers; wait until it does.

        Raises:
            ServiceError: another program holds the service's port, or the service did not
                come up (the message names the log).
        """
        problem = self.check()
        if not problem:
            return "running" if self.pid() else "external, used as is"
        if problem != "nothing listens" and not self.pid():
            raise ServiceError(f"{self.name}: {self._not_the_service(problem)}; stop that program or set "
                               f"another port in config/platform.yaml")
        if self.pid():
            # started by us but not answering yet (e.g. a slow second `up`): just wait
            self.wait_ready(timeout)
            return "running"
        self.home.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.prepare()
        self.start()
        self.wait_ready(timeout)
        self.after_start()
        return "started"

    def down(self, timeout: float = 60.0) -> str:
        """Stop the service if we started it; leave external ones alone."""
        pid = self.pid()
        if pid is None:
            return "external, left running" if self.listening() else "not running"
        self.stop(pid)
        deadline = time.monotonic() + timeout
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if pid_alive(pid):
            self._signal_group(pid, signal.SIGKILL)
        self.pid_path.unlink(missing_ok=True)
        return "stopped"

    def prepare(self) -> None:
        """One-time setup before the first start (data folders, config files)."""

    def after_start(self) -> None:
        """Work once the service answers (databases, topics)."""

    @abstractmethod
    def start(self) -> None: ...

    def stop(self, pid: int) -> None:
        self._signal_group(pid, signal.SIGTERM)

    def ready(self) -> bool:
        return self.reachable()  # still starting: the handshake fails until it answers

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ready():
                return
            pid = self.pid()
            if self.pid_path.exists() and pid is None:
                raise ServiceError(f"{self.name} exited during start-up; see {self.log_path}:\n{self.tail_log()}")
            time.sleep(0.3)
        raise ServiceError(f"{self.name} did not answer at {self.address} within {timeout:.0f}s; see {self.log_path}:\n{self.tail_log()}")

    def tail_log(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def spawn(self, argv: Sequence[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> int:
        """Start ``argv`` detached in its own session, output to the log, pid to the pid file."""
        with open(self.log_path, "ab") as log:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
                cwd=cwd,
                start_new_session=True,
            )
        self.pid_path.write_text(f"{proc.pid}\n")
        return proc.pid

    @staticmethod
    def _signal_group(pid: int, sig: signal.Signals) -> None:
        try:
            os.killpg(pid, sig)
        except (ProcessLookupError, PermissionError):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass


def run(argv: Sequence[str], what: str, **kwargs) -> subprocess.CompletedProcess[str]:
    """Run a setup command; raise :class:`ServiceError` with its output if it fails."""
    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, **kwargs)
    except FileNotFoundError as exc:
        raise ServiceError(f"{what}: {argv[0]} not found ({exc})") from exc
    if proc.returncode != 0:
        raise ServiceError(f"{what} failed ({' '.join(argv)}):\n{proc.stdout}{proc.stderr}")
    return proc
