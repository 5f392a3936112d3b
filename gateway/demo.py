"""A small API behind SentinelGateway, so that `make run` shows the whole loop: an agent
exchanges its pass for a token, calls these routes, and the pass's Usage tab counts them."""

from __future__ import annotations

import asyncio
import itertools
import random
from typing import Annotated, Any, Final

from fastapi import FastAPI, HTTPException, Path
from pydantic import BaseModel, Field

FLAKY_FAILURE_RATE: Final = 0.05
SLOW_SECONDS: Final = (0.2, 0.4)


class NewItem(BaseModel):
    name: str = Field(min_length=1, max_length=200)


class Item(NewItem):
    item_id: int


def create_demo_app(seed: int | None = None) -> FastAPI:
    """GET routes need `read:data`, POST `write:data` (the gateway's default rule)."""
    app = FastAPI(title="Demo API behind the Sentinel gateway", docs_url=None, redoc_url=None)
    items: dict[int, Item] = {i: Item(item_id=i, name=f"item {i}") for i in range(1, 11)}
    ids = itertools.count(11)
    chance = random.Random(seed)

    @app.get("/v1/items")
    async def list_items() -> list[Item]:
        return list(items.values())

    @app.get("/v1/items/{item_id}")
    async def get_item(item_id: Annotated[int, Path(ge=1)]) -> Item:
        if item_id not in items:
            raise HTTPException(404, "no such item")
        return items[item_id]

    @app.post("/v1/items", status_code=201)
    async def create_item(item: NewItem) -> Item:
        created = Item(item_id=next(ids), name=item.name)
        items[created.item_id] = created
        return created

    @app.get("/v1/flaky")
    async def flaky() -> dict[str, Any]:
        """Fails with 503 about 5% of the time."""
        if chance.random() < FLAKY_FAILURE_RATE:
            raise HTTPException(503, "the demo backend is having a moment")
        return {"ok": True}

    @app.get("/v1/slow")
    async def slow() -> dict[str, Any]:
        """Answers after 200-400 ms."""
        await asyncio.sleep(chance.uniform(*SLOW_SECONDS))
        return {"ok": True}

    return app
