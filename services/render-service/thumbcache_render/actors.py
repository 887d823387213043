"""The render actors of the renditions this worker serves, declared on a given broker."""

from __future__ import annotations

import dramatiq
from thumbcache.pipeline.actors import declare_actors
from thumbcache.pipeline.runtime import Runtime


def declare(broker: dramatiq.Broker, rt: Runtime) -> tuple[str, ...]:
    """Declare the actor of every rendition in ``worker.renditions`` (all when empty)."""
    served = rt.settings.served_renditions()
    declare_actors(broker, rt, scan=False, renditions=served)
    return served
