"""Start and stop the HTTP servers under test (ember, and the bare ASGI baseline)."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent


class ServerError(RuntimeError):
    """A server under test did not start, or died while we were measuring it."""


def free_port() -> int:
    # Binding port 0 lets the kernel pick a port nobody is listening on right now.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ember_command(port: int, data_dir: Path, auth: str = "none") -> list[str]:
    """``ember serve`` on loopback. Authentication is off unless asked for: every bench
    measures the platform as earlier runs did, and bench_auth.py measures what SigV4 adds."""
    # Prefer the ember next to the interpreter running us, so any venv works, not just .venv.
    ember = Path(sys.executable).parent / "ember"
    if not ember.exists():
        ember = ROOT / ".venv" / "bin" / "ember"
    return [
        str(ember), "serve", "--port", str(port), "--data-dir", str(data_dir), "--auth", auth,
    ]  # fmt: skip


def bare_asgi_command(port: int, app: str = "bare_asgi:app") -> list[str]:
    # The same server stack ember uses, so the only difference measured is ember itself.
    return [
        sys.executable, "-m", "uvicorn", app, "--app-dir", str(BENCH_DIR),
        "--loop", "uvloop", "--http", "httptools", "--no-access-log",
        "--log-level", "warning", "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip


@contextlib.contextmanager
def running(cmd: list[str], log_path: Path, ready_url: str) -> Iterator[subprocess.Popen[bytes]]:
    """Run `cmd` until the block exits; yield once `ready_url` answers 200."""
    with log_path.open("wb") as log:
        # A session of its own, so a server that ignores SIGTERM can be killed as a group.
        proc = subprocess.Popen(
            cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            wait_ready(proc, ready_url, log_path)
            yield proc
        finally:
            stop(proc)


def wait_ready(
    proc: subprocess.Popen[bytes], url: str, log_path: Path, timeout: float = 60
) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise ServerError(f"server exited {proc.returncode}:\n{log_tail(log_path)}")
            with contextlib.suppress(httpx.HTTPError):
                if client.get(url).status_code == 200:
                    return
            time.sleep(0.05)
    raise ServerError(f"{url} did not answer 200 within {timeout:.0f} s:\n{log_tail(log_path)}")


def stop(proc: subprocess.Popen[bytes], grace: float = 15) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            print(f"warning: pid {proc.pid} ignored SIGTERM for {grace:.0f} s; killing its group")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    _reap_group(proc.pid)


def _reap_group(pgid: int) -> None:
    # Children left in the server's process group (e.g. sandboxes the server failed to stop)
    # would skew the next measurement and outlive the bench; they are ours to end.
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return
    print(f"warning: processes of group {pgid} outlived their server; killing them")
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def log_tail(log_path: Path, lines: int = 30) -> str:
    try:
        text = log_path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])
