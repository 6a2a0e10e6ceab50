"""pytest plugin (entry point `pytest11`): a model repository checks its models from its own test suite.

    def test_export(deploy):
        deploy.check("mymodel", target="android")

`pytest --deploytool` adds one test per model x target that deploytool.toml (or [tool.deploytool]) declares,
with ids like `deploytool[mymodel-android-int8]`. Both go through deploytool.gate, as `deploytool check` does;
each model is exported and verified once per session. A failure shows the parity checklist and the baseline
differences, not a traceback.

pytest imports this module at start-up in every run, so it imports no torch (and no deploytool.api) until a
check actually runs.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest

from deploytool.errors import DeployError

MARKER = "deploytool"
_DEPLOY = pytest.StashKey["Deploy"]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("deploytool", "deploytool model checks")
    group.addoption("--deploytool", action="store_true", default=False,
                    help="Export and parity-check every model x target the deploytool config declares, one test "
                         "each (deploytool[model-target-precision]).")
    group.addoption("--deploytool-config", metavar="FILE", type=Path, default=None,
                    help="deploytool config file [default: deploytool.toml, else [tool.deploytool] in "
                         "pyproject.toml, in the rootdir].")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{MARKER}: exports models and runs parity with deploytool (slow: loads torch)")
    config.stash[_DEPLOY] = Deploy(config.rootpath, file=config.getoption("deploytool_config"))


@pytest.fixture(scope="session")
def deploy(pytestconfig: pytest.Config) -> Deploy:
    """Checks declared models: `deploy.check("mymodel", target="android")` fails the test unless parity passes."""
    return pytestconfig.stash[_DEPLOY]


@pytest.hookimpl(tryfirst=True)  # before -k/-m deselection, so those select our tests too
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "deploy" in getattr(item, "fixturenames", ()):
            item.add_marker(MARKER)
    if not config.getoption("deploytool"):
        return
    deploy = config.stash[_DEPLOY]
    items.extend(ConfigFile.from_parent(session, path=deploy.config_path(), deploy=deploy).collect())


class ConfigFile(pytest.File):
    """The deploytool config as a test file: node ids read `deploytool.toml::deploytool[digitnet-android-int8]`."""

    def __init__(self, *, deploy: Deploy, **kwargs: Any):
        super().__init__(**kwargs)
        self.deploy = deploy

    def collect(self) -> list[pytest.Item]:
        from deploytool import gate

        return [ModelCheck.from_parent(self, name=f"deploytool[{case_id}]", deploy=self.deploy,
                                       model=gate.model_name(project), target=target)
                for project in self.deploy.projects() for target, case_id in gate.planned_cases(project)]


class ModelCheck(pytest.Item):
    """One model x target of the config, exported when stale and verified in its runtime."""

    def __init__(self, *, deploy: Deploy, model: str, target: str, **kwargs: Any):
        super().__init__(**kwargs)
        self.deploy, self.model, self.target = deploy, model, target
        self.add_marker(MARKER)

    def runtest(self) -> None:
        self.deploy.check(self.model, target=self.target)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"deploytool check: {self.model} on {self.target}"


class Deploy:
    """The session's view of the config; each model's gate result is computed once and shared by its tests."""

    def __init__(self, start: Path, *, file: Path | None = None):
        self.start, self.file = start, file
        self._projects: list | None = None
        self._results: dict[tuple[str, str | None], Any] = {}  # (model, extra target) -> cases or DeployError

    def config_path(self) -> Path:
        from deploytool.config import find_config

        found = self.file.resolve() if self.file else (find_config(self.start) or (None,))[0]
        if found is None:
            raise pytest.UsageError(f"--deploytool: no deploytool.toml or [tool.deploytool] in {self.start}; add one, "
                                    "or pass --deploytool-config FILE.")
        return found

    def projects(self) -> list:
        """Every declared model (deploytool.config.ProjectConfig); a config error stops the session."""
        from deploytool.config import load_projects

        if self._projects is None:
            try:
                self._projects = load_projects(self.start, file=self.file)
            except DeployError as exc:
                raise pytest.UsageError(exc.lines()) from None
        return self._projects

    def check(self, name: str, *, target: str | None = None) -> list:
        """Export `name` when its inputs changed, verify each target's artifacts, compare with the baseline.

        Returns the gate's `CaseResult`s; fails the calling test with their checklists unless every one passes.

        >>> deploy.check("mymodel", target="android")[0].id
        'mymodel-android-int8'
        """
        cases = self._cases(name, target)
        cases = [c for c in cases if target is None or c.target == target]
        failed = [c for c in cases if not c.passed]
        if failed:
            pytest.fail("\n\n".join(c.checklist() for c in failed), pytrace=False)
        return cases

    def _cases(self, name: str, target: str | None) -> list:
        from deploytool import gate

        configured = [t for p in self.projects() if gate.model_name(p) == name for t, _ in gate.planned_cases(p)]
        key = (name, None if target is None or target in configured else target)  # all configured targets at once
        if key not in self._results:
            with warnings.catch_warnings():  # torch's and executorch's deprecation noise, as the CLI hides it
                for category in (DeprecationWarning, FutureWarning, UserWarning):
                    warnings.filterwarnings("ignore", category=category, module=r"(torch|torchao|executorch)\.")
                try:
                    result = gate.run(self.projects(), names=(name,), targets=(key[1],) if key[1] else None)
                    self._results[key] = result.cases
                except DeployError as exc:
                    self._results[key] = exc
        outcome = self._results[key]
        if isinstance(outcome, DeployError):
            pytest.fail(outcome.lines(), pytrace=False)
        return outcome
