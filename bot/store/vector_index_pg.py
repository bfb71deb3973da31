"""(placeholder: the index is written in its own branch)"""

from __future__ import annotations

from bot.store.database import Database
from bot.store.vector_index import VectorIndex


async def detect(db: Database) -> VectorIndex | None:
    return None
