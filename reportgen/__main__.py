"""Run the ``featreport`` command as ``python -m reportgen``."""

from __future__ import annotations

from .commands.cli import main

main()
