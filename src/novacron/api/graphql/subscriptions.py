"""The GraphQL ``Subscription`` root: the event log and a task's progress, live.

Both follow ``events.follow``, the event streams' reader (one shared read of the log per wake-up of
the event bus for all followers of the process), so a subscriber sees exactly what ``/v1/events/ws``
would show it: its own tenant's events only. Reads of a task go through ``TaskService`` in a worker
thread, never on the event loop.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

import strawberry
from anyio import to_thread

from novacron import events
from novacron.api.graphql.context import GraphContext, Info
from novacron.api.graphql.types import EventNode, TaskNode
from novacron.errors import InvalidInput
from novacron.tasks.service import TaskService

#: a task in one of these states will not change again
FINISHED = frozenset({"succeeded", "failed", "cancelled"})


def _task(c: GraphContext, task_id: str) -> TaskNode:
    with c.ctx.db.read_session() as s:
        return TaskNode.of(TaskService(s, c.principal, c.ctx).get(task_id))


@strawberry.type
class Subscription:
    """Live events and task progress (graphql-transport-ws at ``/v1/graphql/ws``)."""

    @strawberry.subscription(description="events as they commit (types: e.g. vm.*, task.failed)")
    async def events(
        self, info: Info, types: list[str] | None = None, after: float | None = None
    ) -> AsyncGenerator[EventNode, None]:
        c = info.context
        c.require("event:read")
        if after is not None and not 0 <= after < 2**63:
            raise InvalidInput("after", "must be 0 to 2^63-1", part="query")
        start = None if after is None else int(after)
        async for batch in events.follow(c.ctx.db, c.principal, start, types or []):
            for e in batch:
                yield EventNode.of(e)

    @strawberry.subscription(description="a task now, then at each step, until it is finished")
    async def task_progress(self, info: Info, id: strawberry.ID) -> AsyncGenerator[TaskNode, None]:
        c = info.context
        c.require("task:read")
        # the cursor first, then the task: a step between the two is seen as an event, not lost
        cursor = await events.start_seq(c.ctx.db, None)
        task = await to_thread.run_sync(_task, c, str(id))
        yield task
        if task.state in FINISHED:
            return
        async for batch in events.follow(c.ctx.db, c.principal, cursor, ["task.*"]):
            if any(e["resource_id"] == task.id for e in batch):
                task = await to_thread.run_sync(_task, c, str(id))
                yield task
                if task.state in FINISHED:
                    return
