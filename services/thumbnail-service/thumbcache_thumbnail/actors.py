"""The thumbnail stage's actor, declared on a given broker with its dependencies."""

from __future__ import annotations

from typing import Any

import dramatiq
from thumbcache.pipeline.actors import declare_render_actor
from thumbcache.pipeline.runtime import Runtime


def declare(broker: dramatiq.Broker, rt: Runtime) -> dramatiq.Actor[Any, Any]:
    """Declare ``generate_thumbnail`` on ``broker``."""
    return declare_render_actor(broker, rt, "thumbnail")
