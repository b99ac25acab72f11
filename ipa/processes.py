"""Child processes that never outlive the run: process groups, parent-death signal, atexit,
SIGTERM/SIGINT handlers, and a supervisor that restarts a crashed stage process.

Every child gets its own process group (so stopping it stops anything it spawned) and, on Linux,
``PR_SET_PDEATHSIG`` (so even a SIGKILLed orchestrator leaves no server behind).
"""
from __future__ import annotations

import atexit
import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Sequence

from ipa.errors import IpaError


class ProcessError(IpaError):
    """A child process could not start or serve."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def check_port_free(port: int, host: str = "127.0.0.1") -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            raise ProcessError(f"port {port} on {host} is in use ({e.strerror}); choose another or omit it "
                               "to pick a free one") from None


try:  # loaded here, not in the forked child, where only async-signal-safe work should run
    _LIBC = ctypes.CDLL("libc.so.6", use_errno=True)
except OSError:  # not glibc Linux: process groups and atexit still apply
    _LIBC = None


def _pdeathsig() -> None:  # runs in the child between fork and exec
    os.setpgrp()
    if _LIBC is not None:
        _LIBC.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _long_lived_thread() -> bool:
    """PR_SET_PDEATHSIG fires when the forking *thread* ends, so it is only safe from the main
    thread and the supervisor; children forked elsewhere rely on process groups and atexit."""
    t = threading.current_thread()
    return t is threading.main_thread() or t.name == "ipa-supervisor"


class Child:
    """One managed child process with its log file."""

    def __init__(self, name: str, argv: Sequence[str], log_path: Path, env: dict | None = None,
                 restart: bool = False):
        self.name, self.argv, self.log_path, self.env, self.restart = name, list(argv), Path(log_path), env, restart
        self.popen: subprocess.Popen | None = None
        self.restarts = 0
        self.stopping = False

    def start(self) -> "Child":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        env = dict(os.environ, **(self.env or {}))
        self.popen = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                      env=env, preexec_fn=_pdeathsig if _long_lived_thread() else os.setpgrp,
                                      close_fds=True)
        log.close()
        return self

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def log_tail(self, n: int = 15) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    def stop(self, grace_s: float = 3.0) -> None:
        self.stopping = True
        p = self.popen
        if p is None or p.poll() is not None:
            return
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            p.wait(grace_s)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait(5)


# in creation order: at exit or on SIGTERM the newest group stops first, as the newest child does
# within a group, so a load generator started after the servers it loads stops before them and
# records its requests in flight as such, not as connections the servers closed
_GROUPS: "dict[ProcessGroup, None]" = {}
_HOOKED = False


def _stop_all() -> None:
    for g in reversed(list(_GROUPS)):
        g.stop()


def _on_signal(signum, frame) -> None:
    _stop_all()
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    sys.exit(128 + signum)


def _install_hooks() -> None:
    global _HOOKED
    if _HOOKED:
        return
    _HOOKED = True
    atexit.register(_stop_all)
    if threading.current_thread() is threading.main_thread():
        # SIGINT keeps Python's KeyboardInterrupt (finally blocks stop the group); SIGTERM would
        # otherwise end the interpreter without running them.
        if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
            signal.signal(signal.SIGTERM, _on_signal)


class ProcessGroup:
    """The children of one run; ``stop()`` ends them all (also at exit and on SIGTERM)."""

    def __init__(self, log: Callable[[str], None] | None = None):
        self.children: dict[str, Child] = {}
        self.log = log or (lambda m: print(m, file=sys.stderr))
        self._supervisor: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.on_restart: Callable[[Child], list[str] | None] | None = None  # new argv for a restart
        self.events: list[tuple[float, str, str]] = []  # (wall time, child, what happened)
        _install_hooks()
        _GROUPS[self] = None

    def start(self, name: str, argv: Sequence[str], log_path: Path, env: dict | None = None,
              restart: bool = False) -> Child:
        child = Child(name, argv, log_path, env, restart).start()
        with self._lock:
            self.children[name] = child
        self.events.append((time.time(), name, f"started pid {child.pid}"))
        return child

    def supervise(self, interval_s: float = 0.2) -> None:
        """Restart children started with ``restart=True`` when they die."""
        if self._supervisor is None:
            self._supervisor = threading.Thread(target=self._watch, args=(interval_s,), daemon=True,
                                                name="ipa-supervisor")
            self._supervisor.start()

    def _watch(self, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            with self._lock:
                children = list(self.children.values())
            for c in children:
                if c.restart and not c.stopping and not c.alive() and not self._stop.is_set():
                    code = c.popen.returncode if c.popen else None
                    self.events.append((time.time(), c.name, f"died (exit {code})"))
                    self.log(f"{c.name} died (exit {code}); restarting it")
                    if self.on_restart is not None:
                        argv = self.on_restart(c)
                        if argv:
                            c.argv = argv
                    c.restarts += 1
                    c.start()
                    self.events.append((time.time(), c.name, f"restarted pid {c.pid}"))

    def stop(self) -> None:
        self._stop.set()
        if self._supervisor is not None and self._supervisor is not threading.current_thread():
            self._supervisor.join(2)
        with self._lock:
            children = list(self.children.values())
        for c in reversed(children):
            c.stop()
        _GROUPS.pop(self, None)

    def pids(self) -> list[int]:
        return [c.pid for c in self.children.values() if c.pid is not None]


def wait_http(url: str, child: Child | None = None, timeout_s: float = 30.0, ok=(200,)) -> None:
    """Poll ``url`` until it answers with a status in ``ok``; fail early if ``child`` exits."""
    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        if child is not None and not child.alive():
            raise ProcessError(f"{child.name} exited with code {child.popen.returncode} before serving "
                               f"{url}; its log ({child.log_path}) ends:\n{child.log_tail()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status in ok:
                    return
                last = f"HTTP {r.status}"
        except urllib.error.HTTPError as e:
            last = f"HTTP {e.code}"
        except (OSError, ValueError) as e:
            last = str(e)
        time.sleep(0.05)
    where = f"; {child.name}'s log ({child.log_path}) ends:\n{child.log_tail()}" if child else ""
    raise ProcessError(f"{url} did not become ready within {timeout_s:g}s (last: {last}){where}")


def python_argv(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]
