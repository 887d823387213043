"""An in-process document store with the subset of pymongo's API the state layer uses.

The embedded default (``thumbcache run`` with no MongoDB URL) keeps its job state in one SQLite
file under the data dir through this package, so the repositories of :mod:`thumbcache.state`
run unchanged on either store (ADR 0008). Documents are stored as BSON, so types (datetimes,
ObjectIds, 64-bit integers) come back exactly as from MongoDB. Filters, updates, projections
and sorts follow MongoDB's rules for the operators implemented; anything else raises
``OperationFailure`` instead of quietly doing something different.
"""

from thumbcache.state.docstore.sqlite import LocalClient, LocalDatabase

__all__ = ["LocalClient", "LocalDatabase"]
