"""JUnit XML for CI test reports (GitHub, GitLab, Jenkins): one <testcase> per model x target x check."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from deploytool.fsutil import atomic_write_bytes


def write_junit(result, path: Path) -> Path:
    """A <testsuite> per model; per target a <testcase> for each check (the artifact ran, each parity
    threshold, each baseline metric), failed ones carrying the case's whole checklist.

    >>> write_junit(gate.run(load_projects(Path("."))), Path("deploytool-junit.xml"))
    PosixPath('deploytool-junit.xml')
    """
    root = ET.Element("testsuites", name="deploytool")
    suites: dict[str, ET.Element] = {}
    for case in result.cases:
        suite = suites.get(case.model)
        if suite is None:
            suite = suites[case.model] = ET.SubElement(root, "testsuite", name=case.model)
        for outcome in case.outcomes():
            testcase = ET.SubElement(suite, "testcase", classname=f"{case.model}.{case.target}", name=outcome.name,
                                     time=f"{outcome.seconds:.3f}")
            if not outcome.passed:
                failure = ET.SubElement(testcase, "error" if outcome.error else "failure", message=outcome.message)
                failure.text = case.checklist()
    for element in (*suites.values(), root):
        _count(element)
    ET.indent(root)
    return atomic_write_bytes(path, ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n")


def _count(element: ET.Element) -> None:
    testcases = list(element.iter("testcase"))
    element.set("tests", str(len(testcases)))
    element.set("failures", str(sum(t.find("failure") is not None for t in testcases)))
    element.set("errors", str(sum(t.find("error") is not None for t in testcases)))
    element.set("time", f"{sum(float(t.get('time', 0)) for t in testcases):.3f}")
