"""A route as data: how it is served and how it is documented, declared in one place.

``api.routes`` lists them; the app registers handlers from that list and ``api.openapi``
documents the same list, so a route cannot exist without its documentation or the reverse.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from pydantic import BaseModel

from api.errors import Handler

JSON = "application/json"


@dataclass(frozen=True)
class Reply:
    description: str
    model: type[BaseModel] | None = None
    media_type: str = JSON
    headers: tuple[str, ...] = ()


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    summary: str
    replies: Mapping[int, Reply]
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    tags: tuple[str, ...] = field(default=())
