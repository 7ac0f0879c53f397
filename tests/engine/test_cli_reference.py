"""The command line is described once, by its argparse parser: the docs' usage block is
generated from it."""

from __future__ import annotations

import subprocess

from regretflow.engine.cli.main import synopsis
from tests.conftest import REGRETFLOW, reference_doc_holding


def test_the_docs_usage_block_is_the_parsers_synopsis():
    first_line = synopsis().splitlines()[0]
    page = reference_doc_holding(first_line)
    assert synopsis() in page.read_text(encoding="utf-8"), (
        f"{page.name}: paste regretflow.engine.cli.main.synopsis() into its Command line block"
    )


def test_every_command_of_the_synopsis_has_its_own_help():
    commands = [line.split()[1] for line in synopsis().splitlines()]
    assert commands == ["demo", "run", "replay", "checkpoint", "reproduce", "report", "schema"]
    listed = subprocess.run([REGRETFLOW, "--help"], capture_output=True, text=True, check=True).stdout
    assert all(command in listed for command in commands)
