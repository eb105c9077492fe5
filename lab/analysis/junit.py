"""JUnit XML (the format CI systems display): one test case per verdict."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Case:
    name: str
    passed: bool
    message: str  # why it failed (or what was measured, for a pass)
    error: bool = False  # could not be evaluated (reported as <error>, not <failure>)


def write_junit(
    path: Path, suite: str, cases: Sequence[Case], properties: Mapping[str, str] | None = None
) -> None:
    """`properties` (e.g. the verdict and why a run is INCOMPLETE) go first in the suite."""
    failures = sum(1 for c in cases if not c.passed and not c.error)
    errors = sum(1 for c in cases if not c.passed and c.error)
    root = ET.Element(
        "testsuites", name=suite, tests=str(len(cases)), failures=str(failures), errors=str(errors)
    )
    element = ET.SubElement(
        root,
        "testsuite",
        name=suite,
        tests=str(len(cases)),
        failures=str(failures),
        errors=str(errors),
        skipped="0",
    )
    if properties:
        props = ET.SubElement(element, "properties")
        for key, value in properties.items():
            ET.SubElement(props, "property", name=key, value=value)
    for case in cases:
        node = ET.SubElement(element, "testcase", classname=suite, name=case.name, time="0")
        if not case.passed:
            ET.SubElement(
                node, "error" if case.error else "failure", message=case.message
            ).text = case.message
        else:
            ET.SubElement(node, "system-out").text = case.message
    ET.indent(root)
    path.write_bytes(ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n")
