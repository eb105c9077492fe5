"""Child processes for tests that press Ctrl-C."""

from __future__ import annotations

import signal


def ctrl_c_reaches_it() -> None:
    """`preexec_fn` of a child a test will send SIGINT: SIGINT back to its default action, as under a
    terminal. A test runner started in the background by a shell without job control ignores SIGINT,
    an ignored signal stays ignored across exec, and Python then installs no KeyboardInterrupt handler:
    the child would never see the Ctrl-C the test is about."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
