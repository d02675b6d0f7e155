"""Channel assortment: must-sell, optional and forbidden SKUs and categories per channel
and store, and the must-sell gaps of each store. Routes over `quanyu.services.assortment`."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Query

from quanyu.entrypoints.api.deps import ActorDep, EntityId, PlatformDep
from quanyu.entrypoints.api.schemas import AssortmentRuleIn
from quanyu.services import assortment

router = APIRouter(prefix="/assortment", tags=["assortment"])
CodeQ = Annotated[str | None, Query(max_length=64)]


@router.put("/rules")
def set_rules(
    body: Annotated[list[AssortmentRuleIn], Body(min_length=1, max_length=5000)],
    p: PlatformDep,
    actor: ActorDep,
) -> list[dict[str, Any]]:
    """Create or replace rules, matched by channel, store and target; all or none."""
    return assortment.set_rules(p, [x.to_domain() for x in body], actor=actor)


@router.get("/rules")
def list_rules(
    p: PlatformDep,
    channel: CodeQ = None,
    store: CodeQ = None,
    status: Literal["must", "optional", "forbidden"] | None = None,
) -> list[dict[str, Any]]:
    """Rules, filtered by channel, by store (that store's own rules) and by status."""
    return assortment.list_rules(p, channel=channel, store=store, status=status)


@router.delete("/rules/{rule_id}")
def delete_rule(rule_id: EntityId, p: PlatformDep) -> dict[str, Any]:
    """Delete a rule; answers the rule as it was."""
    return assortment.delete_rule(p, rule_id)


@router.get("/must-sell-gaps")
def must_sell_gaps(
    p: PlatformDep,
    channel: Annotated[str, Query(min_length=1, max_length=64)],
    store: CodeQ = None,
    since: date | None = None,
    until: date | None = None,
) -> dict[str, Any]:
    """Must-sell SKUs and categories a store sold no unit of over the local days
    [since, until); by default the last 30 days through today."""
    return assortment.must_sell_gaps(p, channel=channel, store=store, since=since, until=until)
