"""Pictures sent with questions: stored by reference with their user turn (`turn_images`), and
their bytes in a size-capped cache (`image_cache`), so a follow-up can send them again."""

from __future__ import annotations

import functools
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import delete, insert, select
from sqlalchemy.dialects import postgresql, sqlite

from bot.store.models import ImageCacheRow, TurnImageRow
from bot.store.store import Store


@dataclass(frozen=True)
class PictureRef:
    """What is kept of a picture with its turn: never its bytes."""

    source: str  # the platform's file id, or the console's local path
    filename: str
    sha256: str
    mime: str
    size: int


@dataclass(frozen=True)
class Picture:
    ref: PictureRef
    data: bytes


class PictureStore:
    """Picture references and the picture cache, in the store's database."""

    def __init__(self, store: Store, cache_bytes: int) -> None:
        self._store = store
        self._cache_bytes = cache_bytes

    async def add(self, turn_id: int, pictures: Sequence[Picture]) -> None:
        """Keep `pictures` as the turn's (in order) and their bytes in the cache, then drop the
        oldest cached bytes beyond the cap; one transaction."""
        if not pictures:
            return
        now = time.time()
        refs = [
            {
                "turn_id": turn_id,
                "position": i,
                "source": p.ref.source,
                "filename": p.ref.filename,
                "sha256": p.ref.sha256,
                "mime": p.ref.mime,
                "size": p.ref.size,
            }
            for i, p in enumerate(pictures)
        ]
        unique = {p.ref.sha256: p for p in pictures}.values()
        async with self._store.database.writing() as conn:
            await conn.execute(_REF_INSERT, refs)
            if self._cache_bytes > 0:
                for picture in unique:
                    await conn.execute(
                        _cache_upsert(self._store.engine.dialect.name),
                        _cache_values(picture, now),
                    )
            # Oldest first out: keep the newest rows whose sizes fit the cap.
            sizes = await conn.execute(_SIZES_NEWEST_FIRST)
            total, evicted = 0, []
            for sha, size in sizes.all():
                total += size
                if total > self._cache_bytes:
                    evicted.append(sha)
            if evicted:
                await conn.execute(delete(ImageCacheRow).where(ImageCacheRow.sha256.in_(evicted)))

    async def refs(self, turn_ids: Iterable[int]) -> dict[int, list[PictureRef]]:
        """The pictures of each of `turn_ids` that had any, in the order they were sent."""
        ids = sorted(set(turn_ids))
        if not ids:
            return {}
        stmt = (
            select(TurnImageRow)
            .where(TurnImageRow.turn_id.in_(ids))
            .order_by(TurnImageRow.turn_id, TurnImageRow.position)
        )
        async with self._store.database.reading() as conn:
            rows = (await conn.execute(stmt)).all()
        found: dict[int, list[PictureRef]] = {}
        for row in rows:
            ref = PictureRef(row.source, row.filename, row.sha256, row.mime, row.size)
            found.setdefault(row.turn_id, []).append(ref)
        return found

    async def data(self, sha256s: Iterable[str]) -> dict[str, bytes]:
        """The cached bytes of those pictures still in the cache."""
        wanted = sorted(set(sha256s))
        if not wanted:
            return {}
        stmt = select(ImageCacheRow.sha256, ImageCacheRow.data).where(
            ImageCacheRow.sha256.in_(wanted)
        )
        async with self._store.database.reading() as conn:
            rows = (await conn.execute(stmt)).all()
        return {sha: bytes(data) for sha, data in rows}


_REF_INSERT = insert(TurnImageRow)
_SIZES_NEWEST_FIRST = select(ImageCacheRow.sha256, ImageCacheRow.size).order_by(
    ImageCacheRow.stored_at.desc(), ImageCacheRow.sha256
)


@functools.cache
def _cache_upsert(dialect: str) -> sqlite.Insert | postgresql.Insert:
    """INSERT of a picture's bytes; the same picture again only becomes the newest."""
    insert_ = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert_(ImageCacheRow)
    return stmt.on_conflict_do_update(
        index_elements=["sha256"], set_={"stored_at": stmt.excluded.stored_at}
    )


def _cache_values(picture: Picture, now: float) -> dict[str, object]:
    return {
        "sha256": picture.ref.sha256,
        "mime": picture.ref.mime,
        "size": picture.ref.size,
        "data": picture.data,
        "stored_at": now,
    }
