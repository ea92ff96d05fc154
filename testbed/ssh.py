"""The SSH transport: commands and files to and from a guest, over `fabric`.

The guest's host key is pinned (it comes from the image cache); any other
key is refused.  Login is by the per-image key pair, never by password.
"""

from __future__ import annotations

import base64
import logging
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import paramiko
from fabric import Config, Connection
from invoke.exceptions import CommandTimedOut

from .process import check_stop

# paramiko logs every refused handshake while a guest boots; keep it quiet
# unless the application configures logging itself.
logging.getLogger("paramiko").addHandler(logging.NullHandler())
log = logging.getLogger(__name__)


class _BannerSeen(logging.Filter):
    """Turns paramiko's "Connected (version ...)" into our own event: the guest's sshd answered, the handshake is on.

    Every record of paramiko's transport is dropped: a boot retries the handshake many times, each
    failure logged with a traceback, and a real failure reaches the caller as an exception anyway.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.INFO and record.getMessage().startswith("Connected (version"):
            log.info("SSH banner from the guest; handshake under way")
        return False


_transport_log = logging.getLogger("paramiko.transport")
_transport_log.setLevel(logging.INFO)
_transport_log.addFilter(_BannerSeen())


class GuestCommandError(RuntimeError):
    """A guest command failed or timed out; carries its output."""

    def __init__(self, command: str, result: CommandResult | None, reason: str):
        self.command, self.result = command, result
        detail = f"\n{result.stderr.strip()[-2000:]}" if result and result.stderr.strip() else ""
        super().__init__(f"guest command {command!r} {reason}{detail}")


@dataclass(frozen=True)
class CommandResult:
    command: str
    exit_status: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_status == 0


class GuestShell:
    """Root shell on a guest reachable at 127.0.0.1:`port`."""

    def __init__(self, port: int, client_key: Path, host_key: str, user: str = "root"):
        self.port, self.client_key, self.host_key, self.user = port, client_key, host_key, user
        self._conn: Connection | None = None

    def _new_connection(self) -> Connection:
        config = Config(overrides={"load_ssh_configs": False})
        conn = Connection(
            "127.0.0.1", port=self.port, user=self.user, config=config, connect_timeout=5,
            connect_kwargs={"key_filename": str(self.client_key), "look_for_keys": False,
                            "allow_agent": False, "banner_timeout": 5, "auth_timeout": 5},
        )
        conn.client.set_missing_host_key_policy(paramiko.RejectPolicy())
        key = paramiko.Ed25519Key(data=base64.b64decode(self.host_key))
        conn.client.get_host_keys().add(f"[127.0.0.1]:{self.port}", "ssh-ed25519", key)
        return conn

    def wait_ready(self, timeout: float, alive: Callable[[], bool]) -> None:
        """Retry the SSH handshake until it succeeds, `timeout` passes, or `alive()` turns false."""
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            check_stop()
            if not alive():
                raise ConnectionError("QEMU exited before SSH came up")
            conn = self._new_connection()
            try:
                conn.open()
                self._conn = conn
                return
            except paramiko.BadHostKeyException:
                conn.close()
                raise
            except (TimeoutError, paramiko.SSHException, OSError, EOFError) as exc:
                last_error = exc
                conn.close()
                time.sleep(0.25)
        raise TimeoutError(f"SSH on 127.0.0.1:{self.port} not ready after {timeout:.0f} s (last error: {last_error})")

    @property
    def connection(self) -> Connection:
        if self._conn is None:
            raise ConnectionError("SSH is not connected; wait_ready() first")
        return self._conn

    def run(self, command: str, check: bool = True, timeout: float | None = None) -> CommandResult:
        """Run `command` under the guest's shell and capture its output."""
        try:
            r = self.connection.run(command, hide=True, warn=True, timeout=timeout, in_stream=False)
        except CommandTimedOut:
            check_stop()
            raise GuestCommandError(command, None, f"timed out after {timeout} s") from None
        check_stop()  # a Ctrl-C that a layer below turned into a failed or finished command
        result = CommandResult(command, r.exited, r.stdout, r.stderr)
        if check and not result.ok:
            raise GuestCommandError(command, result, f"exited with status {result.exit_status}")
        return result

    def stream(self, command: str) -> int:
        """Run `command` with its output going straight to ours; return its exit status."""
        log.info("guest command started: %s", command)
        status = self.connection.run(command, hide=False, warn=True, pty=False, in_stream=False).exited
        check_stop()
        return status

    def put(self, local: Path, remote: str) -> None:
        self.connection.put(str(local), remote)

    def interactive(self) -> int:
        """An interactive login shell through the system's ssh client, host key pinned."""
        with tempfile.NamedTemporaryFile("w", suffix=".known_hosts") as known:
            known.write(f"[127.0.0.1]:{self.port} ssh-ed25519 {self.host_key}\n")
            known.flush()
            return subprocess.call([
                "ssh", "-t", "-p", str(self.port), "-i", str(self.client_key),
                "-o", f"UserKnownHostsFile={known.name}", "-o", "StrictHostKeyChecking=yes",
                "-o", "IdentitiesOnly=yes", f"{self.user}@127.0.0.1",
            ])

    def close(self) -> None:
        """Close the connection. Never raises: shutdown must go on to quit QEMU whatever state SSH is in.

        A stop signal raised inside paramiko (say, while it registers a new channel) can leave the
        transport half-updated, so that its own close fails; the socket is then closed directly.
        """
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            conn.close()
        except Exception as exc:  # noqa: BLE001 - any failure here is paramiko's inconsistent state
            log.warning("SSH to port %d did not close cleanly (%s: %s); closing its socket", self.port,
                        type(exc).__name__, exc)
            sock = getattr(conn.transport, "sock", None)
            if sock is not None:
                sock.close()
