"""Words the console shows from data (roles, identity types, timeline kinds, statuses).
Listed here so that ``pybabel extract`` finds them; the templates translate them with
``_(value)``."""

from __future__ import annotations


def N_(message: str) -> str:  # noqa: N802 - the gettext convention
    return message


ROLES = (
    N_("hq_admin"),
    N_("hq_operator"),
    N_("analyst"),
    N_("region_manager"),
    N_("store_manager"),
    N_("guide"),
)
IDENTITY_TYPES = (
    N_("phone"),
    N_("email"),
    N_("wechat_unionid"),
    N_("wechat_openid"),
    N_("platform_buyer"),
    N_("member_card"),
)
TIMELINE = (
    N_("profile_created"),
    N_("registered"),
    N_("identity_linked"),
    N_("merged"),
    N_("order_placed"),
    N_("order_refunded"),
    N_("points_changed"),
    N_("tier_changed"),
    N_("coupon_issued"),
    N_("coupon_reserved"),
    N_("coupon_released"),
    N_("coupon_redeemed"),
    N_("coupon_returned"),
    N_("coupon_voided"),
    N_("benefit_granted"),
    N_("reward_redeemed"),
    N_("reward_reversed"),
)
STATUSES = (
    N_("available"),
    N_("reserved"),
    N_("redeemed"),
    N_("voided"),
    N_("expired"),
    N_("active"),
    N_("paused"),
    N_("pending"),
)
BATCH_KINDS = (N_("members"), N_("codes"))
ENTRY_KINDS = (
    N_("earn"),
    N_("spend"),
    N_("clawback"),
    N_("restore"),
    N_("expire"),
    N_("adjust"),
    N_("merge_in"),
    N_("merge_out"),
    N_("debt_settle"),
)
