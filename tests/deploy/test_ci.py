"""CI runs exactly README's test command, and that command brings what the tests need."""

from __future__ import annotations

import re

from deploy_helpers import ROOT


def _readme_test_command() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("**Set up and pass the tests**", 1)[1]
    match = re.search(r"```sh\n(.+?)\n```", section, re.DOTALL)
    assert match, "README's test command block"
    return match.group(1).strip()


def test_ci_runs_readmes_test_command_verbatim() -> None:
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert _readme_test_command() in ci


def test_readmes_test_command_installs_the_machines_part_first() -> None:
    # The dashboard test drives chromedriver, and the integration tests RabbitMQ: a fresh
    # machine has neither running, so the command sets them up before pytest starts.
    command = _readme_test_command()
    assert command.startswith(".ci/system-packages && ")
    script = (ROOT / ".ci" / "system-packages").read_text()
    assert "chromium-driver" in script and "rabbitmq-server -detached" in script
