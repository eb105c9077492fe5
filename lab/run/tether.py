"""Run a command tied to this process's parent: `python tether.py PARENT_PID COMMAND...`.

It asks Linux for SIGTERM when its parent dies (prctl PR_SET_PDEATHSIG), then runs COMMAND as its child
in its own process group (the caller starts it as a session leader). When the parent dies — `lab run`
killed with SIGKILL, where nothing of it runs to stop Locust — it sends SIGTERM to the whole group
(Locust and the workers it forked for `--processes`, whatever stage their start-up is at), and SIGKILL
after a grace period. A SIGTERM from the parent itself (its orderly stop, sent to the group) is left to
the command. The exit status is the command's.

Run as a script (not `-m`), so nothing of the lab's package is imported before the command starts.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

GRACE_S = 20.0  # for Locust to flush its records after SIGTERM, before SIGKILL
PR_SET_PDEATHSIG = 1


def set_parent_death_signal(signum: int) -> None:
    if not sys.platform.startswith("linux"):
        return  # elsewhere: no tether (the parent's own stop still works)
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")


def main(argv: list[str]) -> int:
    parent, command = int(argv[0]), argv[1:]
    set_parent_death_signal(signal.SIGTERM)
    if os.getppid() != parent:
        return 1  # the parent died before the tether was set: run nothing
    group = os.getpgrp()

    def on_sigterm(signum: int, frame: object) -> None:
        if os.getppid() == parent:
            return  # the parent's orderly stop: it signalled the group itself
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        os.killpg(group, signal.SIGTERM)
        killer = threading.Timer(GRACE_S, os.killpg, (group, signal.SIGKILL))
        killer.daemon = True
        killer.start()

    signal.signal(signal.SIGTERM, on_sigterm)
    # Ctrl-C is the parent's to handle. A handler, not SIG_IGN: an ignored signal stays ignored across
    # exec, and Locust stops its `--processes` workers with SIGINT.
    signal.signal(signal.SIGINT, lambda signum, frame: None)
    child = subprocess.Popen(command)
    code = child.wait()
    if code < 0:  # died of a signal: report it the same way
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
