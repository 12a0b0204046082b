"""What can go wrong in search, each with a stable code."""

from __future__ import annotations

from bastion.errors import BastionError, InputError


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
