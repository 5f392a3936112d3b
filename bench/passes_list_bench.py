"""The project's passes page over 20,000 passes (issue 15: "a project with 20,000 passes
stays usable"): the registry's page query (SQLite, as `make run` keeps it) for the first
page, a page 400 deep by keyset cursor, a search and a status filter, each against the
first page of a 20-pass project in the same run.

Prints `passes_list_ms=` (the first page at 20,000), `passes_list_deep_ratio=` (the deep
page over the first) and `passes_list_20k_vs_20_ratio=`; figures are medians of 20 runs.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from sentinel_usage.passes.migrate import upgrade
from sentinel_usage.passes.model import PassCreate, PassStatus
from sentinel_usage.passes.store import PassStore, create_engine

BIG, SMALL, PAGE = 20_000, 20, 24


async def median_ms(run: Callable[[], Awaitable[object]], times: int = 20) -> float:
    samples = []
    for _ in range(times):
        started = time.perf_counter()
        await run()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


async def fill(store: PassStore, project: str, count: int) -> None:
    spec = PassCreate(agent_name="Agent", agent_type="bench", scopes="read:data")
    for i in range(count):
        named = spec.model_copy(update={"agent_name": f"Agent {i}"})
        created, _ = await store.create(project, named, "bench")
        if i % 10 == 0:
            await store.set_status(project, created.pass_id, PassStatus.INACTIVE, "bench")


async def main() -> None:
    with tempfile.TemporaryDirectory() as directory:
        engine = create_engine(f"sqlite+aiosqlite:///{Path(directory) / 'passes.db'}")
        await upgrade(engine)
        store = PassStore(engine)
        started = time.perf_counter()
        await fill(store, "big", BIG)
        print(f"filled {BIG:,} passes in {time.perf_counter() - started:.0f} s")
        await fill(store, "small", SMALL)

        first = await median_ms(lambda: store.page("big", limit=PAGE))
        after = None
        for _ in range(400):
            after = (await store.page("big", limit=PAGE, after=after)).next_after
        deep = await median_ms(lambda: store.page("big", limit=PAGE, after=after))
        search = await median_ms(lambda: store.page("big", limit=PAGE, search="agent 1999"))
        status = await median_ms(lambda: store.page("big", limit=PAGE, status="inactive"))
        small = await median_ms(lambda: store.page("small", limit=PAGE))
        await store.close()
    print(f"first page {first:.2f} ms, page 401 {deep:.2f} ms, search {search:.2f} ms, "
          f"inactive {status:.2f} ms, a 20-pass project {small:.2f} ms")  # fmt: skip
    print(
        f"bench: passes_list_ms={first:.2f} passes_list_deep_ratio={deep / first:.2f} "
        f"passes_list_search_ms={search:.2f} passes_list_20k_vs_20_ratio={first / small:.2f}"
    )


if __name__ == "__main__":
    asyncio.run(main())
