"""What can go wrong in search, each with a stable code."""

from __future__ import annotations

from bastion.errors import BastionError, InputError, NotFound


class InvalidSearchQuery(InputError):
    """A search query with nothing to search for, too long, or with too many words."""

    code = "invalid_search_query"
    status = 400


class InvalidSearchCursor(InputError):
    """A cursor this search did not give (another query, another filter, or garbled)."""

    code = "invalid_cursor"
    status = 400


class VectorIndexCorrupt(BastionError):
    """A vector index file that cannot be read back (truncated, altered, another format);
    the store rebuilds the index from the database when it meets one."""

    code = "vector_index_corrupt"
    status = 500


class MediaNotIndexed(NotFound):
    """Media asked about (to find what looks like it) that has no image embedding in the
    tenant's index: never indexed, deleted, or another tenant's."""

    code = "media_not_indexed"
    status = 404


class SimilarSearchUnavailable(BastionError):
    """Finding similar media needs an image embedding model, and none is configured."""

    code = "similar_search_unavailable"
    status = 503


class SearchDisabled(BastionError):
    """Search is switched off in the settings (``search.enabled: false``)."""

    code = "search_disabled"
    status = 503
