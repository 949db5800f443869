"""GnuPG daemons (gpg-agent, dirmngr, ...) that tests start in their keyrings: find them by
their ``--homedir`` and stop them, so the suite leaves no process running."""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path

import psutil

DAEMONS = frozenset({"gpg-agent", "dirmngr", "keyboxd", "scdaemon"})


def _homedir(cmdline: list[str]) -> str | None:
    for n, arg in enumerate(cmdline):
        if arg == "--homedir" and n + 1 < len(cmdline):
            return cmdline[n + 1]
        if arg.startswith("--homedir="):
            return arg.partition("=")[2]
    return None


def gnupg_daemons(under: Path | str) -> dict[int, str]:
    """pid -> homedir of this user's live GnuPG daemons whose homedir is ``under`` or lies
    beneath it."""
    root = os.path.realpath(under)
    found = {}
    for proc in psutil.process_iter(["name", "cmdline", "uids", "status"]):
        info = proc.info
        if info["name"] not in DAEMONS or info["status"] == psutil.STATUS_ZOMBIE:
            continue
        if info["uids"] is None or info["uids"].real != os.getuid():
            continue
        home = _homedir(info["cmdline"] or [])
        if home and (os.path.realpath(home) + os.sep).startswith(root + os.sep):
            found[proc.pid] = home
    return found


def stop_gnupg_daemons(under: Path | str, timeout: float = 30.0) -> dict[int, str]:
    """Stop the daemons :func:`gnupg_daemons` finds: ``gpgconf --homedir H --kill all`` for
    each homedir, SIGTERM for a daemon whose homedir is gone; returns those still alive."""
    daemons = gnupg_daemons(under)
    for home in sorted(set(daemons.values())):
        if os.path.isdir(home):
            subprocess.run(["gpgconf", "--homedir", home, "--kill", "all"],
                           capture_output=True, timeout=timeout, check=False)
    procs = []
    for pid in daemons:
        with contextlib.suppress(psutil.NoSuchProcess):
            procs.append(psutil.Process(pid))
    _, alive = psutil.wait_procs(procs, timeout=timeout / 2)
    for proc in alive:  # gpgconf could not reach it (its homedir or socket was removed)
        proc.terminate()
    _, alive = psutil.wait_procs(alive, timeout=timeout / 2)
    return {p.pid: daemons[p.pid] for p in alive if _running(p)}


def _running(proc: psutil.Process) -> bool:
    """Alive and not a zombie (an exited daemon waits for init to reap it)."""
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
