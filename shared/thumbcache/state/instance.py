"""Which server a URL reaches: a token an embedded server's supervisor writes into it, read back
by the processes that want to use it (a port alone may have been reused by a stranger)."""

from __future__ import annotations

from pymongo import MongoClient
from pymongo.errors import PyMongoError

INSTANCE_DB = "thumbcache_embedded"
_ID = "instance"


def write_token(url: str, token: str) -> None:
    """Record ``token`` as the identity of the server at ``url``."""
    client: MongoClient[dict[str, object]] = MongoClient(url, serverSelectionTimeoutMS=10_000)
    try:
        client[INSTANCE_DB]["instance"].replace_one(
            {"_id": _ID}, {"_id": _ID, "token": token}, upsert=True
        )
    finally:
        client.close()


def read_token(url: str) -> str | None:
    """The token recorded in the server at ``url``, or None (not ours, or not answering)."""
    client: MongoClient[dict[str, object]] = MongoClient(url, serverSelectionTimeoutMS=2000)
    try:
        doc = client[INSTANCE_DB]["instance"].find_one({"_id": _ID})
    except PyMongoError:
        return None
    finally:
        client.close()
    return str(doc["token"]) if doc else None
