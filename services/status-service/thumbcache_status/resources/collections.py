"""``/v1/collections``, ``/v1/collections/{id}`` and ``/v1/collections/{id}/images``."""

from __future__ import annotations

import falcon

from thumbcache_status import params
from thumbcache_status.errors import NotFoundError
from thumbcache_status.reader import StatusReader
from thumbcache_status.views import collection_view, image_view


class CollectionList:
    """Collections by id."""

    def __init__(self, reader: StatusReader) -> None:
        self._reader = reader

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """A page of collections."""
        params.check_known(req.params, ("limit", "cursor"))
        page = params.parse_page(req.params, params.COLLECTION_ID)
        found = self._reader.collections(page.limit, page.after)
        resp.media = {
            "items": [collection_view(c) for c in found.docs],
            "next_cursor": found.next_key,
        }


class CollectionItem:
    """One collection."""

    def __init__(self, reader: StatusReader) -> None:
        self._reader = reader

    def on_get(self, req: falcon.Request, resp: falcon.Response, collection_id: str) -> None:
        """The collection's root, name, cache folder and last scan."""
        params.check_known(req.params, ())
        collection_id = params.path_id(collection_id, params.COLLECTION_ID, "collection")
        collection = self._reader.collection(collection_id)
        if collection is None:
            raise NotFoundError("no collection with that id")
        self._reader.count_view(collection_id)  # cache warming favours viewed collections
        resp.media = collection_view(collection)


class CollectionImages:
    """A collection's images in source order."""

    def __init__(self, reader: StatusReader, renditions: tuple[str, ...]) -> None:
        self._reader = reader
        self._renditions = renditions

    def on_get(self, req: falcon.Request, resp: falcon.Response, collection_id: str) -> None:
        """A page of images, each as ``thumbcache images --json`` prints it, with its id."""
        params.check_known(req.params, ("limit", "cursor"))
        collection_id = params.path_id(collection_id, params.COLLECTION_ID, "collection")
        page = params.parse_page(req.params, None)
        if self._reader.collection(collection_id) is None:
            raise NotFoundError("no collection with that id")
        found = self._reader.images(collection_id, page.limit, page.after)
        resp.media = {
            "items": [image_view(i, self._renditions) for i in found.docs],
            "next_cursor": found.next_key,
        }
