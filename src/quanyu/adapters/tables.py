"""SQLAlchemy Core tables: the canonical store, the same on SQLite and PostgreSQL.

Timestamps are stored as naive UTC and returned aware (:class:`UtcDateTime`).
Points entries, allocations, merges and history rows are append-only: the code only
ever inserts them. Lots keep a ``remaining`` that a CHECK constraint keeps >= 0.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    PrimaryKeyConstraint,
    String,
    Table,
    TypeDecorator,
    UniqueConstraint,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# BIGINT on PostgreSQL; INTEGER on SQLite so the key stays the rowid.
Id = BigInteger().with_variant(Integer(), "sqlite")


class UtcDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out; stored naive in UTC."""

    impl = DateTime(timezone=False)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        return None if value is None else stored_utc(value)


def stored_utc(value: Any) -> datetime:
    """A stored UTC timestamp (naive, or ISO text on SQLite) as an aware UTC datetime:
    what :class:`UtcDateTime` returns, for reads made below SQLAlchemy."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value.replace(tzinfo=UTC)


def pk() -> Column[Any]:
    return Column("id", Id, primary_key=True, autoincrement=True)


def fk(name: str, target: str, *, nullable: bool = False, index: bool = False) -> Column[Any]:
    return Column(name, Id, ForeignKey(target), nullable=nullable, index=index)


def ts(name: str, *, nullable: bool = False) -> Column[Any]:
    return Column(name, UtcDateTime(), nullable=nullable)


# ---------------------------------------------------------------- brand set-up

organisations = Table(
    "organisations",
    metadata,
    pk(),
    Column("code", String(64), nullable=False, unique=True),
    Column("name", String(200), nullable=False),
)

programs = Table(
    "programs",
    metadata,
    pk(),
    fk("organisation_id", "organisations.id"),
    Column("code", String(64), nullable=False, unique=True),
    Column("name", String(200), nullable=False),
    Column("timezone", String(64), nullable=False, server_default="Asia/Shanghai"),
    Column("currency", String(3), nullable=False, server_default="CNY"),
    Column("pending_days", Integer, nullable=False, server_default="0"),
    # expiry: never | end_of_following_year | rolling_days
    Column("expiry_kind", String(32), nullable=False, server_default="end_of_following_year"),
    Column("expiry_days", Integer, nullable=True),
    Column("clawback_policy", String(16), nullable=False, server_default="other_lots"),
    Column("point_value_minor", Numeric(12, 4), nullable=False, server_default="1"),
    Column("points_payment_cap_percent", Integer, nullable=False, server_default="50"),
    Column("tier_metric", String(16), nullable=False, server_default="spend"),
    Column("tier_review", String(16), nullable=False, server_default="anniversary"),
    Column("tier_review_month", Integer, nullable=False, server_default="1"),
    Column("tier_review_day", Integer, nullable=False, server_default="1"),
    Column("tier_grace_days", Integer, nullable=False, server_default="30"),
    Column("tier_max_downgrade_levels", Integer, nullable=False, server_default="1"),
    Column("tier_window_days", Integer, nullable=False, server_default="365"),
    # A coupon reserved at checkout is held this long before it is released.
    Column("coupon_hold_minutes", Integer, nullable=False, server_default="30"),
    # What an order line for a SKU forbidden in its channel does: reject | flag
    Column("assortment_policy", String(16), nullable=False, server_default="flag"),
    CheckConstraint("points_payment_cap_percent BETWEEN 0 AND 100", name="cap_percent"),
    CheckConstraint("pending_days >= 0", name="pending_days"),
)

brands = Table(
    "brands",
    metadata,
    pk(),
    fk("organisation_id", "organisations.id"),
    fk("program_id", "programs.id"),
    Column("code", String(64), nullable=False, unique=True),
    Column("name", String(200), nullable=False),
)

tiers = Table(
    "tiers",
    metadata,
    pk(),
    fk("program_id", "programs.id"),
    Column("code", String(64), nullable=False),
    Column("name", String(200), nullable=False),
    Column("rank", Integer, nullable=False),
    Column("threshold", BigInteger, nullable=False),
    UniqueConstraint("program_id", "code"),
    UniqueConstraint("program_id", "rank", name="uq_tiers_program_rank"),
    CheckConstraint("threshold >= 0", name="threshold"),
)

earn_rules = Table(
    "earn_rules",
    metadata,
    pk(),
    fk("program_id", "programs.id"),
    Column("version", Integer, nullable=False),
    ts("effective_from"),
    Column("document", JSON, nullable=False),
    ts("created_at"),
    Column("created_by", String(200), nullable=False),
    UniqueConstraint("program_id", "version"),
)

channels = Table(
    "channels",
    metadata,
    pk(),
    Column("code", String(64), nullable=False, unique=True),
    Column("name", String(200), nullable=False),
    # store_pos | web_mall | wechat_mini | tmall | jd | douyin | kuaishou | other
    Column("kind", String(32), nullable=False),
)

stores = Table(
    "stores",
    metadata,
    pk(),
    fk("brand_id", "brands.id"),
    Column("code", String(64), nullable=False, unique=True),
    Column("name", String(200), nullable=False),
    Column("city", String(100), nullable=False),
    Column("region", String(100), nullable=False),
    Column("latitude", Float, nullable=True),
    Column("longitude", Float, nullable=True),
)

guides = Table(
    "guides",
    metadata,
    pk(),
    fk("store_id", "stores.id"),
    Column("code", String(64), nullable=False, unique=True),
    Column("name", String(200), nullable=False),
)

products = Table(
    "products",
    metadata,
    pk(),
    fk("brand_id", "brands.id"),
    Column("sku", String(64), nullable=False, unique=True),
    Column("style", String(64), nullable=False),
    Column("colour", String(64), nullable=False),
    Column("size", String(32), nullable=False),
    Column("category", String(64), nullable=False),
    Column("name", String(200), nullable=False),
    Column("list_price", BigInteger, nullable=False),
)

# ---------------------------------------------------------------- OneID

profiles = Table(
    "profiles",
    metadata,
    pk(),
    Column("name", String(200), nullable=True),
    Column("gender", String(16), nullable=True),
    Column("birthday", Date, nullable=True),
    fk("home_store_id", "stores.id", nullable=True),
    Column("status", String(16), nullable=False, server_default="active"),  # active | merged
    fk("merged_into_id", "profiles.id", nullable=True, index=True),
    # Last known location (from a check-in, a delivery address, a store visit).
    Column("last_latitude", Float, nullable=True),
    Column("last_longitude", Float, nullable=True),
    ts("located_at", nullable=True),
    ts("created_at"),
    ts("updated_at"),
)

identities = Table(
    "identities",
    metadata,
    pk(),
    fk("profile_id", "profiles.id", index=True),
    Column("type", String(32), nullable=False),
    Column("namespace", String(128), nullable=False, server_default=""),
    Column("value", String(255), nullable=False),
    ts("first_seen_at"),
    Column("source", String(64), nullable=False),
    UniqueConstraint("type", "namespace", "value", name="uq_identities_key"),
)

memberships = Table(
    "memberships",
    metadata,
    pk(),
    fk("profile_id", "profiles.id", index=True),
    fk("program_id", "programs.id"),
    Column("member_no", String(64), nullable=False, unique=True),
    Column("status", String(16), nullable=False, server_default="active"),  # active | merged
    ts("registered_at"),
    fk("channel_id", "channels.id", nullable=True),
    fk("store_id", "stores.id", nullable=True),
    fk("guide_id", "guides.id", nullable=True),
    Column("tier_code", String(64), nullable=False),
    ts("tier_achieved_at"),
    Column("tier_review_on", Date, nullable=False),
    Column("debt_points", BigInteger, nullable=False, server_default="0"),
    CheckConstraint("debt_points >= 0", name="debt"),
    UniqueConstraint("profile_id", "program_id", name="uq_memberships_profile_program"),
)

merges = Table(
    "merges",
    metadata,
    pk(),
    fk("survivor_id", "profiles.id", index=True),
    fk("absorbed_id", "profiles.id", index=True),
    Column("reason", String(200), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("trigger", String(200), nullable=False),
    Column("before_state", JSON, nullable=False),
    ts("merged_at"),
)

# ---------------------------------------------------------------- orders

orders = Table(
    "orders",
    metadata,
    pk(),
    fk("channel_id", "channels.id"),
    Column("external_id", String(128), nullable=False),
    fk("brand_id", "brands.id"),
    fk("profile_id", "profiles.id", nullable=True, index=True),
    fk("store_id", "stores.id", nullable=True),
    fk("guide_id", "guides.id", nullable=True),
    ts("ordered_at"),
    Column("list_total", BigInteger, nullable=False),
    Column("paid_total", BigInteger, nullable=False),
    Column("points_used", BigInteger, nullable=False),
    Column("points_amount", BigInteger, nullable=False),
    Column("points_earned", BigInteger, nullable=False),
    Column("refunded_amount", BigInteger, nullable=False, server_default="0"),
    Column("points_clawed_back", BigInteger, nullable=False, server_default="0"),
    Column("points_restored", BigInteger, nullable=False, server_default="0"),
    Column("fingerprint", String(64), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("result", JSON, nullable=False),
    ts("received_at"),
    UniqueConstraint("channel_id", "external_id", name="uq_orders_channel_external"),
    CheckConstraint("refunded_amount <= paid_total", name="refund_le_paid"),
    CheckConstraint("points_clawed_back <= points_earned", name="clawback_le_earned"),
    CheckConstraint("points_restored <= points_used", name="restore_le_used"),
)
Index("ix_orders_profile_ordered", orders.c.profile_id, orders.c.ordered_at)
Index("ix_orders_received", orders.c.received_at)  # incremental analytics sync

order_lines = Table(
    "order_lines",
    metadata,
    pk(),
    fk("order_id", "orders.id", index=True),
    Column("line_no", Integer, nullable=False),
    Column("sku", String(64), nullable=False),
    Column("category", String(64), nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("list_price", BigInteger, nullable=False),
    Column("paid_amount", BigInteger, nullable=False),
    Column("refunded_quantity", Integer, nullable=False, server_default="0"),
    Column("refunded_amount", BigInteger, nullable=False, server_default="0"),
    UniqueConstraint("order_id", "line_no", name="uq_order_lines_order_line"),
    CheckConstraint("quantity > 0", name="quantity"),
    CheckConstraint("refunded_quantity <= quantity", name="refund_qty"),
    CheckConstraint("refunded_amount <= paid_amount", name="refund_amount"),
)

payments = Table(
    "payments",
    metadata,
    pk(),
    fk("order_id", "orders.id", index=True),
    Column("method", String(32), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("points", BigInteger, nullable=False, server_default="0"),
)

refunds = Table(
    "refunds",
    metadata,
    pk(),
    fk("channel_id", "channels.id"),
    Column("external_id", String(128), nullable=False),
    fk("order_id", "orders.id", index=True),
    ts("refunded_at"),
    Column("amount", BigInteger, nullable=False),
    Column("points_clawed_back", BigInteger, nullable=False),
    Column("points_restored", BigInteger, nullable=False),
    Column("fingerprint", String(64), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("result", JSON, nullable=False),
    ts("received_at"),
    UniqueConstraint("channel_id", "external_id", name="uq_refunds_channel_external"),
)
Index("ix_refunds_received", refunds.c.received_at)

refund_lines = Table(
    "refund_lines",
    metadata,
    pk(),
    fk("refund_id", "refunds.id", index=True),
    Column("line_no", Integer, nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("amount", BigInteger, nullable=False),
)

# ---------------------------------------------------------------- points ledger

points_lots = Table(
    "points_lots",
    metadata,
    pk(),
    fk("profile_id", "profiles.id"),
    fk("program_id", "programs.id"),
    fk("order_id", "orders.id", nullable=True, index=True),
    ts("earned_at"),
    ts("available_at"),
    ts("expires_at", nullable=True),
    Column("original", BigInteger, nullable=False),
    Column("remaining", BigInteger, nullable=False),
    CheckConstraint("remaining >= 0", name="remaining_nonneg"),
    CheckConstraint("remaining <= original", name="remaining_le_original"),
    CheckConstraint("original > 0", name="original_pos"),
)
Index(
    "ix_points_lots_owner_live",
    points_lots.c.profile_id,
    points_lots.c.program_id,
    points_lots.c.remaining,
)
Index("ix_points_lots_expiry", points_lots.c.expires_at, points_lots.c.remaining)

points_entries = Table(
    "points_entries",
    metadata,
    pk(),
    fk("profile_id", "profiles.id"),
    fk("program_id", "programs.id"),
    Column("kind", String(16), nullable=False),
    Column("points", BigInteger, nullable=False),
    Column("debt_delta", BigInteger, nullable=False, server_default="0"),
    fk("lot_id", "points_lots.id", nullable=True),
    fk("order_id", "orders.id", nullable=True),
    fk("refund_id", "refunds.id", nullable=True),
    fk("merge_id", "merges.id", nullable=True),
    Column("reason", String(500), nullable=False),
    Column("actor", String(200), nullable=False),
    ts("occurred_at"),
    ts("recorded_at"),
)
Index("ix_points_entries_owner", points_entries.c.profile_id, points_entries.c.program_id)
Index("ix_points_entries_order", points_entries.c.order_id)
Index("ix_points_entries_recorded", points_entries.c.recorded_at)

points_allocations = Table(
    "points_allocations",
    metadata,
    pk(),
    fk("entry_id", "points_entries.id", index=True),
    fk("lot_id", "points_lots.id", index=True),
    Column("points", BigInteger, nullable=False),
    CheckConstraint("points > 0", name="points_pos"),
)

# ---------------------------------------------------------------- tiers and history

tier_changes = Table(
    "tier_changes",
    metadata,
    pk(),
    fk("membership_id", "memberships.id", index=True),
    Column("from_tier", String(64), nullable=True),
    Column("to_tier", String(64), nullable=False),
    Column("reason", String(200), nullable=False),
    Column("qualifying_value", BigInteger, nullable=False),
    Column("actor", String(200), nullable=False),
    ts("changed_at"),
)

history = Table(
    "history",
    metadata,
    pk(),
    fk("profile_id", "profiles.id", index=True),
    Column("kind", String(32), nullable=False),
    Column("summary", String(500), nullable=False),
    Column("data", JSON, nullable=False),
    Column("actor", String(200), nullable=False),
    ts("occurred_at"),
)

# ---------------------------------------------------------------- coupons

coupon_templates = Table(
    "coupon_templates",
    metadata,
    pk(),
    fk("program_id", "programs.id"),
    Column("code", String(64), nullable=False, unique=True),
    Column("name", String(200), nullable=False),
    # amount_off | percent_off | threshold | gift | shipping
    Column("kind", String(16), nullable=False),
    Column("value", BigInteger, nullable=False, server_default="0"),  # fen, or percent
    Column("max_discount", BigInteger, nullable=True),  # cap of a percent-off discount
    Column("min_spend", BigInteger, nullable=False, server_default="0"),
    Column("gift_sku", String(64), nullable=True),
    ts("valid_from", nullable=True),
    ts("valid_until", nullable=True),
    Column("valid_days", Integer, nullable=True),  # N days after issue
    Column("scope", JSON, nullable=False),
    Column("stack_group", String(64), nullable=True),  # None: exclusive
    Column("per_member_limit", Integer, nullable=True),  # redemptions per member
    Column("total_limit", Integer, nullable=True),  # redemptions in all
    Column("max_issued", Integer, nullable=True),  # budget: coupons issued
    Column("max_discount_total", BigInteger, nullable=True),  # budget: discount given, fen
    Column("issued_count", Integer, nullable=False, server_default="0"),
    Column("redeemed_count", Integer, nullable=False, server_default="0"),
    Column("discount_total", BigInteger, nullable=False, server_default="0"),
    Column("status", String(16), nullable=False, server_default="active"),  # active | paused
    ts("created_at"),
    Column("created_by", String(200), nullable=False),
    CheckConstraint("value >= 0", name="value_nonneg"),
    CheckConstraint("issued_count >= 0 AND redeemed_count >= 0", name="counts_nonneg"),
    CheckConstraint("discount_total >= 0", name="discount_nonneg"),
    CheckConstraint("max_issued IS NULL OR issued_count <= max_issued", name="issued_le_budget"),
    CheckConstraint(
        "total_limit IS NULL OR redeemed_count <= total_limit", name="redeemed_le_limit"
    ),
    CheckConstraint(
        "max_discount_total IS NULL OR discount_total <= max_discount_total",
        name="discount_le_budget",
    ),
)

coupon_batches = Table(
    "coupon_batches",
    metadata,
    pk(),
    fk("template_id", "coupon_templates.id", index=True),
    Column("request_key", String(128), nullable=False, unique=True),
    Column("kind", String(16), nullable=False),  # members | codes
    Column("requested", Integer, nullable=False),
    Column("issued", Integer, nullable=False),
    Column("result", JSON, nullable=False),
    Column("actor", String(200), nullable=False),
    ts("created_at"),
)

coupons = Table(
    "coupons",
    metadata,
    pk(),
    fk("template_id", "coupon_templates.id"),
    fk("profile_id", "profiles.id", nullable=True, index=True),  # None: an unclaimed code
    Column("code", String(32), nullable=False, unique=True),
    # available | reserved | redeemed | voided  (expiry is read off valid_until)
    Column("status", String(16), nullable=False),
    ts("valid_from"),
    ts("valid_until", nullable=True),
    fk("batch_id", "coupon_batches.id", nullable=True, index=True),
    Column("source", String(32), nullable=False),
    ts("issued_at"),
)
Index("ix_coupons_template_profile", coupons.c.template_id, coupons.c.profile_id)

coupon_redemptions = Table(
    "coupon_redemptions",
    metadata,
    pk(),
    fk("coupon_id", "coupons.id", index=True),
    fk("template_id", "coupon_templates.id"),
    fk("profile_id", "profiles.id", nullable=True, index=True),
    fk("channel_id", "channels.id"),
    Column("order_external_id", String(128), nullable=False),
    fk("store_id", "stores.id", nullable=True),
    # reserved | confirmed | released | returned
    Column("status", String(16), nullable=False),
    Column("discount", BigInteger, nullable=False),
    Column("lines", JSON, nullable=False),  # [{line_no, discount}]
    Column("fingerprint", String(64), nullable=False),
    ts("reserved_at"),
    ts("hold_until"),
    ts("confirmed_at", nullable=True),
    ts("closed_at", nullable=True),
    CheckConstraint("discount >= 0", name="discount_nonneg"),
)
Index(
    "ix_coupon_redemptions_order",
    coupon_redemptions.c.channel_id,
    coupon_redemptions.c.order_external_id,
)
Index("ix_coupon_redemptions_hold", coupon_redemptions.c.status, coupon_redemptions.c.hold_until)

coupon_events = Table(
    "coupon_events",
    metadata,
    pk(),
    fk("coupon_id", "coupons.id", index=True),
    fk("template_id", "coupon_templates.id", index=True),
    fk("profile_id", "profiles.id", nullable=True, index=True),
    # issued | claimed | reserved | released | redeemed | returned | voided | expired
    Column("kind", String(16), nullable=False),
    fk("redemption_id", "coupon_redemptions.id", nullable=True),
    fk("channel_id", "channels.id", nullable=True),
    fk("store_id", "stores.id", nullable=True),
    Column("order_external_id", String(128), nullable=True),
    Column("discount", BigInteger, nullable=False, server_default="0"),
    Column("reason", String(500), nullable=False),
    Column("actor", String(200), nullable=False),
    ts("occurred_at"),
)
Index("ix_coupon_events_occurred", coupon_events.c.occurred_at)

# ---------------------------------------------------------------- benefits

benefits = Table(
    "benefits",
    metadata,
    pk(),
    fk("program_id", "programs.id"),
    Column("code", String(64), nullable=False, unique=True),
    Column("name", String(200), nullable=False),
    # welcome | birthday | member_day | free_shipping | priority_purchase
    Column("kind", String(32), nullable=False),
    Column("tier_codes", JSON, nullable=False),  # [] means every tier
    fk("coupon_template_id", "coupon_templates.id", nullable=True),
    Column("points", BigInteger, nullable=False, server_default="0"),
    Column("settings", JSON, nullable=False),  # kind-specific: day of month, percent, skus...
    Column("status", String(16), nullable=False, server_default="active"),
    ts("created_at"),
    CheckConstraint("points >= 0", name="points_nonneg"),
)

benefit_grants = Table(
    "benefit_grants",
    metadata,
    pk(),
    fk("benefit_id", "benefits.id"),
    fk("profile_id", "profiles.id", index=True),
    Column("period", String(16), nullable=False),  # '2026', '2026-03', 'once'
    fk("coupon_id", "coupons.id", nullable=True),
    fk("points_entry_id", "points_entries.id", nullable=True),
    Column("actor", String(200), nullable=False),
    ts("granted_at"),
    UniqueConstraint("benefit_id", "profile_id", "period", name="uq_benefit_grants_once"),
)

# ---------------------------------------------------------------- points mall

rewards = Table(
    "rewards",
    metadata,
    pk(),
    fk("program_id", "programs.id"),
    Column("code", String(64), nullable=False, unique=True),
    Column("name", String(200), nullable=False),
    Column("kind", String(16), nullable=False),  # coupon | physical | experience
    Column("points_price", BigInteger, nullable=False),
    Column("cash_price", BigInteger, nullable=False, server_default="0"),
    fk("coupon_template_id", "coupon_templates.id", nullable=True),
    Column("stock", Integer, nullable=True),  # None: unlimited
    Column("per_member_limit", Integer, nullable=True),
    Column("min_tier_code", String(64), nullable=True),
    Column("status", String(16), nullable=False, server_default="active"),
    ts("created_at"),
    CheckConstraint("points_price >= 0 AND cash_price >= 0", name="prices_nonneg"),
    CheckConstraint("stock IS NULL OR stock >= 0", name="stock_nonneg"),
)

redemption_windows = Table(
    "redemption_windows",
    metadata,
    pk(),
    fk("program_id", "programs.id", index=True),
    Column("name", String(200), nullable=False),
    ts("starts_at"),
    ts("ends_at"),
    CheckConstraint("ends_at > starts_at", name="ordered"),
)

reward_redemptions = Table(
    "reward_redemptions",
    metadata,
    pk(),
    fk("reward_id", "rewards.id", index=True),
    fk("profile_id", "profiles.id", index=True),
    fk("program_id", "programs.id"),
    Column("request_key", String(128), nullable=False, unique=True),
    Column("fingerprint", String(64), nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("points", BigInteger, nullable=False),
    Column("cash", BigInteger, nullable=False),
    # placed | fulfilled | reversed
    Column("status", String(16), nullable=False),
    fk("spend_entry_id", "points_entries.id", nullable=True),
    fk("reversal_entry_id", "points_entries.id", nullable=True),
    fk("coupon_id", "coupons.id", nullable=True),
    Column("result", JSON, nullable=False),
    Column("actor", String(200), nullable=False),
    ts("created_at"),
    ts("closed_at", nullable=True),
    CheckConstraint("quantity > 0", name="quantity_pos"),
)

# ---------------------------------------------------------------- channel assortment

assortment_rules = Table(
    "assortment_rules",
    metadata,
    pk(),
    fk("channel_id", "channels.id", index=True),
    fk("store_id", "stores.id", nullable=True),  # None: every store of the channel
    Column("target_kind", String(16), nullable=False),  # sku | category
    Column("target", String(64), nullable=False),
    Column("status", String(16), nullable=False),  # must | optional | forbidden
    # "<channel id>/<store id or *>/<target kind>:<target>": one rule per target
    Column("rule_key", String(220), nullable=False, unique=True),
    ts("updated_at"),
    Column("updated_by", String(200), nullable=False),
)

order_flags = Table(
    "order_flags",
    metadata,
    pk(),
    fk("order_id", "orders.id", index=True),
    Column("line_no", Integer, nullable=True),
    Column("code", String(64), nullable=False),
    Column("detail", String(500), nullable=False),
)

# ---------------------------------------------------------------- insight (issue 4)

consents = Table(
    "consents",
    metadata,
    pk(),
    fk("profile_id", "profiles.id", index=True),
    # sms | email | wechat | call | ...: the contact channel the consent is for
    Column("purpose", String(32), nullable=False),
    Column("granted", Boolean, nullable=False),
    Column("source", String(64), nullable=False),
    Column("actor", String(200), nullable=False),
    ts("recorded_at"),
)

campaigns = Table(
    "campaigns",
    metadata,
    pk(),
    Column("code", String(64), nullable=False, unique=True),
    Column("name", String(200), nullable=False),
    Column("kind", String(16), nullable=False),  # event | popup | campaign
    fk("store_id", "stores.id", nullable=True),
    ts("starts_at"),
    ts("ends_at"),
    Column("window_days", Integer, nullable=False, server_default="14"),
    Column("cost", BigInteger, nullable=False, server_default="0"),
    Column("created_by", String(200), nullable=False),
    ts("created_at"),
)

touchpoints = Table(
    "touchpoints",
    metadata,
    pk(),
    fk("profile_id", "profiles.id", index=True),
    Column("kind", String(32), nullable=False),  # interaction | control | visit | ...
    fk("campaign_id", "campaigns.id", nullable=True, index=True),
    fk("channel_id", "channels.id", nullable=True),
    fk("store_id", "stores.id", nullable=True),
    ts("occurred_at"),
    Column("source", String(64), nullable=False),
    Column("actor", String(200), nullable=False),
    ts("recorded_at"),
)
Index("ix_touchpoints_recorded", touchpoints.c.recorded_at)

acquisition_costs = Table(
    "acquisition_costs",
    metadata,
    pk(),
    fk("channel_id", "channels.id"),
    Column("month", String(7), nullable=False),  # YYYY-MM
    Column("amount", BigInteger, nullable=False),  # fen
    Column("actor", String(200), nullable=False),
    ts("loaded_at"),
    UniqueConstraint("channel_id", "month", name="uq_acquisition_costs_channel_month"),
    CheckConstraint("amount >= 0", name="amount_nonneg"),
)

tag_definitions = Table(
    "tag_definitions",
    metadata,
    pk(),
    Column("code", String(64), nullable=False, unique=True),
    Column("name", String(200), nullable=False),
    Column("kind", String(16), nullable=False),  # rule | realtime | model
    Column("document", JSON, nullable=False),  # condition, or model settings
    Column("version", Integer, nullable=False),
    Column("status", String(16), nullable=False, server_default="active"),
    Column("actor", String(200), nullable=False),
    ts("updated_at"),
)

member_tags = Table(
    "member_tags",
    metadata,
    pk(),
    fk("profile_id", "profiles.id"),
    Column("tag", String(64), nullable=False),
    Column("value", String(64), nullable=False),
    Column("score", Float, nullable=True),
    Column("model_version", String(255), nullable=False),
    ts("computed_at"),
    UniqueConstraint("profile_id", "tag", name="uq_member_tags_profile_tag"),
)
Index("ix_member_tags_tag_value", member_tags.c.tag, member_tags.c.value)

tag_runs = Table(
    "tag_runs",
    metadata,
    pk(),
    Column("tag", String(64), nullable=False, index=True),
    Column("version", Integer, nullable=False),
    Column("model_version", String(255), nullable=False),
    Column("members", BigInteger, nullable=False),
    Column("distribution", JSON, nullable=False),
    Column("details", JSON, nullable=False),
    Column("actor", String(200), nullable=False),
    ts("started_at"),
    ts("finished_at"),
)

segments = Table(
    "segments",
    metadata,
    pk(),
    Column("code", String(64), nullable=False, unique=True),
    Column("name", String(200), nullable=False),
    Column("condition", JSON, nullable=False),
    Column("version", Integer, nullable=False),
    Column("actor", String(200), nullable=False),
    ts("updated_at"),
)

segment_snapshots = Table(
    "segment_snapshots",
    metadata,
    pk(),
    fk("segment_id", "segments.id", index=True),
    Column("version", Integer, nullable=False),
    Column("members", BigInteger, nullable=False),
    Column("entered", BigInteger, nullable=False),
    Column("exited", BigInteger, nullable=False),
    Column("actor", String(200), nullable=False),
    ts("taken_at"),
)

segment_members = Table(
    "segment_members",
    metadata,
    fk("segment_id", "segments.id"),
    fk("profile_id", "profiles.id", index=True),
    ts("entered_at"),
    PrimaryKeyConstraint("segment_id", "profile_id"),
)

segment_events = Table(
    "segment_events",
    metadata,
    pk(),
    fk("segment_id", "segments.id"),
    fk("snapshot_id", "segment_snapshots.id", index=True),
    fk("profile_id", "profiles.id", index=True),
    Column("kind", String(8), nullable=False),  # entered | exited
    ts("occurred_at"),
)
Index("ix_segment_events_segment_at", segment_events.c.segment_id, segment_events.c.occurred_at)

audit_log = Table(
    "audit_log",
    metadata,
    pk(),
    Column("action", String(64), nullable=False),  # export | reveal | points_adjust | ...
    Column("subject", String(200), nullable=False),
    Column("detail", JSON, nullable=False),
    Column("actor", String(200), nullable=False),
    ts("occurred_at"),
)
Index("ix_audit_log_action_at", audit_log.c.action, audit_log.c.occurred_at)
Index("ix_audit_log_subject", audit_log.c.subject)
# Staff search members by any identity value, and by the start of a name.
Index("ix_identities_value", identities.c.value)
Index("ix_profiles_name", profiles.c.name)

# ---------------------------------------------------------------- staff access

staff = Table(
    "staff",
    metadata,
    pk(),
    Column("username", String(64), nullable=False, unique=True),
    Column("display_name", String(200), nullable=False),
    Column("password_hash", String(255), nullable=False),
    # hq_admin | hq_operator | analyst | region_manager | store_manager | guide
    Column("role", String(32), nullable=False),
    Column("region", String(100), nullable=True),
    fk("guide_id", "guides.id", nullable=True),
    Column("language", String(8), nullable=True),  # None: follow the browser
    Column("active", Boolean, nullable=False, server_default="1"),
    Column("created_by", String(200), nullable=False),
    ts("created_at"),
)

staff_stores = Table(
    "staff_stores",
    metadata,
    fk("staff_id", "staff.id"),
    fk("store_id", "stores.id"),
    PrimaryKeyConstraint("staff_id", "store_id"),
)

# A console session: the cookie holds the token, the table its SHA-256.
staff_sessions = Table(
    "staff_sessions",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    fk("staff_id", "staff.id", index=True),
    Column("csrf_token", String(64), nullable=False),
    ts("created_at"),
    ts("expires_at"),
    ts("revoked_at", nullable=True),
)

login_failures = Table(
    "login_failures",
    metadata,
    pk(),
    Column("username", String(64), nullable=False),
    Column("address", String(64), nullable=False),
    ts("failed_at"),
)
Index("ix_login_failures_username_at", login_failures.c.username, login_failures.c.failed_at)
Index("ix_login_failures_address_at", login_failures.c.address, login_failures.c.failed_at)

# Integration keys: ``qk_<prefix>_<secret>``; the secret is kept as its SHA-256.
api_keys = Table(
    "api_keys",
    metadata,
    pk(),
    Column("prefix", String(16), nullable=False, unique=True),
    Column("secret_hash", String(64), nullable=False),
    Column("name", String(200), nullable=False),
    Column("channels", JSON, nullable=False),  # channel codes; [] means any
    Column("stores", JSON, nullable=False),  # store codes; [] means any
    Column("created_by", String(200), nullable=False),
    ts("created_at"),
    ts("expires_at", nullable=True),  # set when rotated with a grace period
    ts("revoked_at", nullable=True),
    fk("rotated_from_id", "api_keys.id", nullable=True),
)
