"""The state one bootstrap invocation builds up as it goes, handed down to the steps.

``bootstrap.main`` makes one ``Context`` per invocation and passes it down; nothing is kept in
module globals, so two invocations in one process (the tests) never share a log, package
sources or an app wheel. A step takes the ``Context`` when it reads what an earlier step set
(the package sources, the app's wheel); one that only reports takes its ``Log``.

Standard library only, Python 3.7-parseable: ``bootstrap.py`` imports it before the version
check.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bootstrap_log import Log
from bootstrap_pip import PipSources


@dataclass
class Context:
    """What this invocation knows beyond its command line.

    Attributes:
        log: Its messages and log file (started once the venv or the bundle is known).
        pip_sources: The flags every pip install gets: set when the user's pip configuration
            is read (``bootstrap_pip.read_pip_sources``) or a wheelhouse is chosen
            (``--offline``); None before.
        app_wheel: An installed app's Tunebench wheel (``--wheel``), installed instead of the
            checkout in editable mode; None in a checkout.
    """

    log: Log = field(default_factory=Log)
    pip_sources: PipSources | None = None
    app_wheel: Path | None = None

    @property
    def sources(self) -> PipSources:
        """The package sources in force: none beyond pip's defaults until they are read."""
        return self.pip_sources or PipSources()
