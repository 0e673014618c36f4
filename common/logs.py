"""Logging set-up shared by every Corral command."""
from __future__ import annotations

import logging
import os


def setup_logging(component: str, level: str | None = None) -> None:
    level = (level or os.environ.get("CORRAL_LOG_LEVEL", "INFO")).upper()
    logging.basicConfig(
        level=getattr(logging, level, logging.INFO),
        format=f"%(asctime)s %(levelname)-7s {component} %(name)s: %(message)s",
    )
    # kombu and amqp are chatty at INFO about things we log ourselves.
    logging.getLogger("amqp").setLevel(logging.WARNING)
    logging.getLogger("kombu").setLevel(logging.WARNING)
