"""Entry point of ``python -m agent --name X --pool default``."""
from __future__ import annotations

import sys

from agent.cli import main

sys.exit(main())
