"""Operations over the job state and cache folders: recovery, stale items, cleanup, reconcile,
alerts, dead letters, regeneration. Plain functions over a Runtime or a Store."""
