"""The scanner's actor, declared on a given broker with its dependencies."""

from __future__ import annotations

from typing import Any

import dramatiq
from thumbcache.pipeline.actors import declare_scan_actor
from thumbcache.pipeline.runtime import Runtime


def declare(broker: dramatiq.Broker, rt: Runtime) -> dramatiq.Actor[Any, Any]:
    """Declare ``scan_collection`` on ``broker``."""
    return declare_scan_actor(broker, rt)
