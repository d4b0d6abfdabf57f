"""Subprocesses in tests (the engine, the alerter as users run them): stopped or reaped."""

from __future__ import annotations

import signal
import subprocess


def stop_gracefully(proc: subprocess.Popen, timeout: float = 30.0) -> bytes:
    """SIGTERM, then wait: the process must exit 0; its stderr."""
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, stderr.decode()[-2000:]
    return stderr


def reap(proc: subprocess.Popen) -> None:
    """SIGKILL a process still running (a failed test) and wait for it."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()
