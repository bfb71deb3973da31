"""Pictures kept with their turns (by reference) and their bytes in a size-capped cache, on
SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib

from bot.domain import Author, ConversationKey, TurnKind, TurnRole
from bot.store import Store
from bot.store.pictures import Picture, PictureRef, PictureStore

KEY = ConversationKey("slack", "T1", "C1")
ALICE = Author("U1", "Alice")


def picture(data: bytes, name: str = "shot.png") -> Picture:
    sha = hashlib.sha256(data).hexdigest()
    return Picture(PictureRef(f"F-{name}", name, sha, "image/png", len(data)), data)


async def turn(store: Store, text: str) -> int:
    return await store.add_turn(
        KEY, role=TurnRole.USER, kind=TurnKind.TEXT, content=text, author=ALICE
    )


async def test_pictures_are_kept_by_reference_and_the_cache_drops_the_oldest(store: Store) -> None:
    pictures = PictureStore(store, cache_bytes=250)
    first, second = await turn(store, "look"), await turn(store, "and this")
    a, b, c = picture(b"a" * 100, "a.png"), picture(b"b" * 100, "b.png"), picture(b"c" * 100)
    await pictures.add(first, [a, b])
    await pictures.add(second, [c, a])  # `a` again: stored once, now among the newest
    refs = await pictures.refs([first, second, 999])
    assert refs == {first: [a.ref, b.ref], second: [c.ref, a.ref]}
    # 300 bytes over a 250-byte cap: the oldest (b) went; the turn text holds no bytes.
    cached = await pictures.data([a.ref.sha256, b.ref.sha256, c.ref.sha256])
    assert cached == {a.ref.sha256: a.data, c.ref.sha256: c.data}
    assert [t.content for t in await store.history(KEY)] == ["look", "and this"]
    assert await pictures.refs([]) == {} and await pictures.data([]) == {}


async def test_a_zero_cap_keeps_references_but_no_bytes(store: Store) -> None:
    pictures = PictureStore(store, cache_bytes=0)
    turn_id = await turn(store, "look")
    shot = picture(b"\x89PNG" + bytes(range(256)))
    await pictures.add(turn_id, [shot])
    assert await pictures.refs([turn_id]) == {turn_id: [shot.ref]}
    assert await pictures.data([shot.ref.sha256]) == {}
