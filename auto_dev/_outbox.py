"""The outbox tables' operations: record events, claim deliveries, settle results.

Used by :class:`auto_dev.events.EventBus`; nothing here runs handlers. Every method that opens its
own transaction is synchronous (the bus calls it in a worker thread).

Delivery states::

    pending --claim--> running --ok--> delivered
                          |  --error/timeout--> failed --due--> running ...
                          |  --error, out of attempts / unreadable event--> dead
                          '--lease expired (the process died)--> claimable again

A claim is an ``UPDATE ... WHERE <still claimable> RETURNING``: two dispatchers (two processes)
never both claim the same delivery. Results are written only if the claim is still ours
(same attempt count), so a late result after a lease expiry cannot clobber a newer attempt.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, cast

from sqlalchemy import (
    ColumnElement,
    Table,
    and_,
    bindparam,
    exists,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from auto_dev._event_types import Event
from auto_dev._exceptions import MalformedEventError
from auto_dev._subscriptions import ALL_TENANTS
from auto_dev.db import Database
from auto_dev.models import EventDelivery, EventRecord, utcnow

Outcome = Literal["delivered", "failed", "dead", "release"]

_RECORDS = cast(Table, EventRecord.__table__)
_DELIVERIES = cast(Table, EventDelivery.__table__)
STATUSES = ("pending", "running", "delivered", "failed", "dead")


@dataclass(frozen=True)
class Claim:
    """One delivery this process now owns until ``lease_s`` from the claim."""

    delivery_id: int
    event_id: str
    handler: str
    attempts: int
    event: Event | None
    error: str | None  # why the stored event cannot be delivered (never retried)


@dataclass(frozen=True)
class Result:
    claim: Claim
    outcome: Outcome
    error: str | None = None


def fresh(event_ids: list[str]) -> ColumnElement[bool]:
    """Deliveries of just-committed events."""
    return and_(EventDelivery.event_id.in_(event_ids), EventDelivery.status == "pending")


def due(now: datetime, stale_before: datetime) -> ColumnElement[bool]:
    """Retries whose backoff elapsed, claims whose lease expired, and pending deliveries of
    events older than ``stale_before`` (their dispatch never happened or failed)."""
    stale_events = select(EventRecord.id).where(
        EventRecord.status == "pending", EventRecord.created_at <= stale_before
    )
    return or_(
        and_(EventDelivery.status.in_(("failed", "running")), EventDelivery.next_attempt_at <= now),
        and_(EventDelivery.status == "pending", EventDelivery.event_id.in_(stale_events)),
    )


def in_scope(scopes: dict[str, str]) -> ColumnElement[bool]:
    """Deliveries to a handler of ``scopes`` whose tenant that handler's scope covers."""
    every = [name for name, tenant in scopes.items() if tenant == ALL_TENANTS]
    by_tenant: dict[str, list[str]] = {}
    for name, tenant in scopes.items():
        if tenant != ALL_TENANTS:
            by_tenant.setdefault(tenant, []).append(name)
    return or_(
        EventDelivery.handler.in_(every),
        *(and_(EventDelivery.tenant_id == tenant, EventDelivery.handler.in_(names))
          for tenant, names in by_tenant.items()),
    )


class Outbox:
    """Reads and writes ``event_records`` / ``event_deliveries`` for one bus."""

    def __init__(
        self,
        database: Database,
        *,
        lease_s: float,
        max_attempts: int,
        backoff_base_s: float,
        backoff_max_s: float,
    ) -> None:
        self.database = database
        self.lease_s = lease_s
        self.max_attempts = max_attempts
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s

    # -- accepting ------------------------------------------------------------------------

    def record(self, session: Session, event: Event, handlers: list[str]) -> bool:
        """Insert ``event`` and one delivery per handler in ``session``'s transaction.

        Returns whether there is anything to dispatch (False for a duplicate or no handlers).
        Core statements rather than the unit of work: this runs once per event, and the ORM's
        flush machinery would cost several times the inserts themselves.
        """
        try:
            self.database.ensure_tenant(session, event.tenant_id)
            now = utcnow()
            inserted = self._insert_record(
                session,
                {
                    "id": event.event_id,
                    "tenant_id": event.tenant_id,
                    "type": event.type_name,
                    "payload": event.to_payload(),
                    "status": "pending" if handlers else "dispatched",
                    "created_at": now,
                    "dispatched_at": None if handlers else now,
                },
            )
            if not inserted:
                stored = session.execute(
                    select(EventRecord.type, EventRecord.tenant_id).where(
                        EventRecord.id == event.event_id
                    )
                ).one()
                if (stored.type, stored.tenant_id) != (event.type_name, event.tenant_id):
                    raise MalformedEventError(
                        "event_id", f"{event.event_id!r} is already used by another event"
                    )
                return False
            if handlers:
                session.execute(
                    insert(_DELIVERIES),
                    [
                        {
                            "tenant_id": event.tenant_id,
                            "event_id": event.event_id,
                            "handler": name,
                            "status": "pending",
                            "attempts": 0,
                        }
                        for name in handlers
                    ],
                )
        except SQLAlchemyError as exc:
            raise self.database.translate_error(exc) from exc
        return bool(handlers)

    @staticmethod
    def _insert_record(session: Session, values: dict[str, Any]) -> bool:
        """Insert the event row unless its id is stored already; return whether it inserted."""
        table = _RECORDS
        dialect = session.get_bind().dialect.name
        session.flush()  # the caller's pending rows (its tenant, its work) go first
        connection = session.connection()
        upsert: Any
        if dialect == "sqlite":
            upsert = sqlite_insert(table)
        elif dialect == "postgresql":
            upsert = postgresql_insert(table)
        else:  # no portable upsert: look first (a concurrent duplicate then fails loudly)
            if session.get(EventRecord, values["id"]) is not None:
                return False
            connection.execute(insert(table).values(values))
            return True
        # RETURNING yields the row only when it was inserted (rowcount is not reliable here).
        statement = upsert.values(values).on_conflict_do_nothing().returning(table.c.id)
        return connection.execute(statement).first() is not None

    # -- claiming -------------------------------------------------------------------------

    def claim(
        self, condition: ColumnElement[bool], scopes: dict[str, str], limit: int | None
    ) -> list[Claim]:
        """Atomically mark matching deliveries ``running`` and load their events: only
        deliveries to one of ``scopes``' handlers, of a tenant that handler's scope covers."""
        if not scopes:
            return []
        lease_until = utcnow() + timedelta(seconds=self.lease_s)
        with self.database.session() as session:
            query = (
                select(EventDelivery.id)
                .where(condition, in_scope(scopes))
                .order_by(EventDelivery.id)
            )
            ids = session.scalars(query if limit is None else query.limit(limit)).all()
            if not ids:
                return []
            # The condition is re-checked by the UPDATE: whoever got there first wins.
            rows = session.execute(
                update(EventDelivery)
                .where(EventDelivery.id.in_(ids), condition)
                .values(
                    status="running",
                    attempts=EventDelivery.attempts + 1,
                    next_attempt_at=lease_until,
                )
                .returning(
                    EventDelivery.id,
                    EventDelivery.event_id,
                    EventDelivery.handler,
                    EventDelivery.attempts,
                )
                .execution_options(synchronize_session=False)
            ).all()
            records = session.execute(
                select(EventRecord.id, EventRecord.type, EventRecord.payload).where(
                    EventRecord.id.in_({row.event_id for row in rows})
                )
            ).all()
        events: dict[str, Event | str] = {}
        for record in records:
            try:
                events[record.id] = Event.from_payload(record.type, record.payload)
            except MalformedEventError as exc:
                events[record.id] = f"stored event cannot be rebuilt: {exc}"
        claims = []
        for row in sorted(rows, key=lambda r: r.id):
            stored = events.get(row.event_id, "stored event is missing")
            claims.append(
                Claim(
                    delivery_id=row.id,
                    event_id=row.event_id,
                    handler=row.handler,
                    attempts=row.attempts,
                    event=stored if isinstance(stored, Event) else None,
                    error=stored if isinstance(stored, str) else None,
                )
            )
        return claims

    # -- settling -------------------------------------------------------------------------

    def backoff(self, attempts: int) -> timedelta:
        """How long to wait after failed attempt number ``attempts`` (1-based)."""
        seconds = self.backoff_base_s * (2 ** min(max(attempts - 1, 0), 62))
        return timedelta(seconds=min(seconds, self.backoff_max_s))

    def settle(self, results: Iterable[Result]) -> None:
        """Write each result to its delivery, then mark fully settled events dispatched.

        A result is written only while the claim is still ours (``running`` with the attempt
        count we claimed): after a lease expiry someone else may own the delivery.
        """
        now = utcnow()
        table = _DELIVERIES
        params = []
        event_ids: set[str] = set()
        for result in results:
            event_ids.add(result.claim.event_id)
            params.append(
                {
                    "b_id": result.claim.delivery_id,
                    "b_claimed": result.claim.attempts,
                    **{f"b_{k}": v for k, v in self._values(result, now).items()},
                }
            )
        if not params:
            return
        statement = (
            update(table)
            .where(
                table.c.id == bindparam("b_id"),
                table.c.status == "running",
                table.c.attempts == bindparam("b_claimed"),
            )
            .values(
                status=bindparam("b_status"),
                attempts=bindparam("b_attempts"),
                next_attempt_at=bindparam("b_next_attempt_at"),
                last_error=bindparam("b_last_error"),
                delivered_at=bindparam("b_delivered_at"),
            )
        )
        with self.database.session() as session:
            session.connection().execute(statement, params)
            _mark_dispatched(session, event_ids, now)

    def _values(self, result: Result, now: datetime) -> dict[str, Any]:
        claim = result.claim
        values: dict[str, Any] = {
            "status": "failed",
            "attempts": claim.attempts,
            "next_attempt_at": None,
            "last_error": result.error,
            "delivered_at": None,
        }
        if result.outcome == "delivered":
            values.update(status="delivered", delivered_at=now, last_error=None)
        elif result.outcome == "release":  # not ours to run after all: undo the claim
            values.update(status="pending", attempts=claim.attempts - 1, last_error=None)
        elif result.outcome == "dead" or claim.attempts >= self.max_attempts:
            values.update(status="dead")
        else:
            values.update(next_attempt_at=now + self.backoff(claim.attempts))
        return values

    # -- operations -----------------------------------------------------------------------

    def stats(self, tenant_id: str | None = None) -> dict[str, int]:
        query = select(EventDelivery.status, func.count()).group_by(EventDelivery.status)
        if tenant_id is not None:
            query = query.where(EventDelivery.tenant_id == tenant_id)
        with self.database.session(readonly=True) as session:
            counts = {status: int(n) for status, n in session.execute(query).all()}
        return {status: counts.get(status, 0) for status in STATUSES}

    def requeue_dead(self, *, handler: str | None, tenant_id: str | None) -> int:
        conditions = [EventDelivery.status == "dead"]
        if handler is not None:
            conditions.append(EventDelivery.handler == handler)
        if tenant_id is not None:
            conditions.append(EventDelivery.tenant_id == tenant_id)
        with self.database.session() as session:
            result = session.execute(
                update(EventDelivery)
                .where(*conditions)
                .values(status="failed", attempts=0, next_attempt_at=utcnow())
                .execution_options(synchronize_session=False)
            )
            count = int(getattr(result, "rowcount", 0) or 0)
            if count:
                has_retry = exists().where(
                    EventDelivery.event_id == EventRecord.id, EventDelivery.status == "failed"
                )
                session.execute(
                    update(EventRecord)
                    .where(EventRecord.status == "dispatched", has_retry)
                    .values(status="pending", dispatched_at=None)
                    .execution_options(synchronize_session=False)
                )
        return count


def _mark_dispatched(session: Session, event_ids: set[str], now: datetime) -> None:
    """Events whose every delivery is settled (delivered or dead) become ``dispatched``."""
    if not event_ids:
        return
    unsettled = exists().where(
        EventDelivery.event_id == EventRecord.id,
        EventDelivery.status.not_in(("delivered", "dead")),
    )
    session.execute(
        update(EventRecord)
        .where(EventRecord.id.in_(event_ids), EventRecord.status == "pending", ~unsettled)
        .values(status="dispatched", dispatched_at=now)
        .execution_options(synchronize_session=False)
    )
