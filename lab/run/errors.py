"""What can end a `lab run` early, by whose fault: the input's (exit 2) or the lab's (exit 3)."""

from __future__ import annotations


class BadInput(ValueError):
    """A problem with what was asked for, found before anything started. The message is one line
    naming the file or option and what was expected."""


class LabFailed(RuntimeError):
    """The lab itself failed (images, containers, Locust, the run record)."""


class RecordFailed(LabFailed):
    """The run record could not be written (e.g. the disk is full): the run was stopped."""
