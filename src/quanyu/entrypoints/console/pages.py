"""The console: server-rendered pages (Jinja2 + HTMX, charts with ECharts) over the same
services as the API. Who sees what is decided by the services, from the staff member's
:class:`Principal`; the templates only leave out what the person cannot use."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated, Any, TypeVar
from urllib.parse import quote
from zoneinfo import ZoneInfo

from fastapi import APIRouter, FastAPI, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from quanyu.domain.access import LANGUAGES, Permission, Principal
from quanyu.domain.errors import (
    Forbidden,
    NotAuthenticated,
    NotFound,
    QuanyuError,
    TooManyAttempts,
    ValidationFailed,
)
from quanyu.entrypoints.api.auth import CSRF_HEADER, SESSION_COOKIE
from quanyu.entrypoints.api.deps import MemberId
from quanyu.entrypoints.console import i18n
from quanyu.services import (
    access,
    coupons,
    insight,
    member_view,
    members,
    points,
    reports,
    setup,
    tiers,
)
from quanyu.services.uow import Platform

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")

router = APIRouter(include_in_schema=False)

P = Permission
CN = ZoneInfo("Asia/Shanghai")
BUILDER_ROWS = 4  # condition rows in the segment builder


class LoginRequired(Exception):
    """Raised by a page when nobody is logged in; answered with a redirect."""


def _platform(request: Request) -> Platform:
    p: Platform = request.app.state.platform
    return p


def _session(request: Request) -> tuple[Principal, str] | None:
    """The logged-in staff member and their CSRF token; None without a live session."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    try:
        return access.session(_platform(request), token)
    except NotAuthenticated:
        return None


def _who(request: Request) -> tuple[Principal, str]:
    found = _session(request)
    if found is None:
        raise LoginRequired
    return found


def _check_csrf(request: Request, csrf: str, form_token: str | None) -> None:
    given = request.headers.get(CSRF_HEADER) or form_token
    if not access.csrf_matches(csrf, given):
        raise Forbidden("the form has expired; reload the page", permission="csrf")


def _tz(platform: Platform) -> ZoneInfo:
    programs = platform.reference.get().programs
    return programs[min(programs)].tz if programs else CN


def render(
    request: Request,
    name: str,
    *,
    who: Principal | None = None,
    csrf: str | None = None,
    status: int = 200,
    **context: Any,
) -> HTMLResponse:
    language = _lang(request, who)
    tr = i18n.translations(language)
    fmt = i18n.Formats(language, _tz(_platform(request)))
    env_globals = {
        "_": tr.gettext,
        "gettext": tr.gettext,
        "ngettext": tr.ngettext,
        "fmt": fmt,
        "lang": language,
        "languages": i18n.NAMES,
        "who": who,
        "csrf": csrf,
        "P": P,
        "path": request.url.path,
    }
    return templates.TemplateResponse(request, name, {**env_globals, **context}, status_code=status)


def _page(request: Request, permission: Permission | None = None) -> tuple[Principal, str]:
    who, csrf = _who(request)
    if permission is not None and not who.can(permission):
        raise Forbidden(f"this page needs the {permission.value} permission", permission=permission)
    return who, csrf


# ---------------------------------------------------------------- login


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str = "/") -> HTMLResponse:
    return render(request, "login.html", next=_safe_next(next), error=None)


def _safe_next(target: str) -> str:
    return target if target.startswith("/") and not target.startswith("//") else "/"


@router.post("/login", response_model=None)
def login(
    request: Request,
    username: Annotated[str, Form(max_length=64)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    next: Annotated[str, Form(max_length=500)] = "/",
) -> Response:
    address = request.client.host if request.client else "unknown"
    try:
        token, _ = access.login(
            _platform(request), username=username, password=password, address=address
        )
    except (NotAuthenticated, TooManyAttempts) as exc:
        tr = i18n.translations(_lang(request, None))
        message = (
            tr.gettext("Too many failed logins. Try again in %(seconds)s seconds.")
            % {"seconds": exc.retry_after}
            if isinstance(exc, TooManyAttempts)
            else tr.gettext("Wrong username or password.")
        )
        status = 429 if isinstance(exc, TooManyAttempts) else 401
        return render(request, "login.html", next=_safe_next(next), error=message, status=status)
    response = RedirectResponse(_safe_next(next), status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        max_age=access.SESSION_HOURS * 3600,
        path="/",
    )
    return response


@router.post("/logout", response_model=None)
def logout(request: Request, csrf_token: Annotated[str | None, Form()] = None) -> Response:
    found = _session(request)
    if found is not None:
        _check_csrf(request, found[1], csrf_token)
        access.logout(_platform(request), request.cookies[SESSION_COOKIE])
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.post("/language", response_model=None)
def language(
    request: Request,
    language: Annotated[str, Form(max_length=8)],
    csrf_token: Annotated[str | None, Form()] = None,
    back: Annotated[str, Form(max_length=500)] = "/",
) -> Response:
    if language not in LANGUAGES:
        raise ValidationFailed("unknown language", field="language")
    response = RedirectResponse(_safe_next(back), status_code=303)
    found = _session(request)
    if found is not None and found[0].staff_id is not None:
        _check_csrf(request, found[1], csrf_token)
        access.set_language(_platform(request), found[0].staff_id, language)
    response.set_cookie("quanyu_lang", language, samesite="lax", max_age=365 * 86400, path="/")
    return response


# ---------------------------------------------------------------- dashboard


def _period(since: date | None, until: date | None, today: date) -> tuple[date, date]:
    until = until or today + timedelta(days=1)
    since = since or date(until.year - 1, until.month, 1)
    if until <= since:
        raise ValidationFailed("the end must be after the start", field="until")
    return since, until


@router.get("/", response_class=HTMLResponse)
def dashboard(
    request: Request,
    *,
    since: date | None = None,
    until: date | None = None,
    brand: Annotated[str | None, Query(max_length=64)] = None,
    channel: Annotated[str | None, Query(max_length=64)] = None,
    store: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    who, csrf = _page(request)
    if not who.can(P.VIEW_KPIS):
        return RedirectResponse("/members", status_code=303)
    platform = _platform(request)
    today = platform.clock.now().astimezone(_tz(platform)).date()
    since, until = _period(since, until, today)
    asked = {k: [v] for k, v in (("brand", brand), ("channel", channel), ("store", store)) if v}
    filters = access.scoped_filters(platform, who, asked)
    monthly = insight.kpi_query(since=since, until=until, grain="month", filters=filters)
    sales = insight.kpi(platform, "sales", monthly)
    by_channel = insight.kpi_query(
        since=since, until=until, grain="month", by=["channel"], filters=filters
    )
    recruits = insight.kpi(platform, "new_members", by_channel)
    repurchase = insight.kpi(platform, "repurchase", monthly)
    total = insight.kpi_query(since=since, until=until, filters=filters)
    totals = (insight.kpi(platform, "sales", total) or [{}])[0]
    new_total = sum(r["new_members"] for r in recruits)  # every channel, every month
    lifecycle = insight.kpi(platform, "lifecycle", total)
    charts = _dashboard_charts(sales, recruits, repurchase, lifecycle)
    ref = platform.reference.get()
    visible_stores = sorted(s.code for s in ref.stores.values() if who.scope.allows_store(s.id))
    return render(
        request,
        "dashboard.html",
        who=who,
        csrf=csrf,
        since=since,
        until=until,
        brand=brand,
        channel=channel,
        store=store,
        brands=sorted(ref.brands),
        channels=sorted(ref.channels),
        stores=visible_stores,
        totals=totals,
        new_total=new_total,
        charts=charts,
    )


def _month(value: Any) -> str:
    return str(value)[:7]


def _dashboard_charts(
    sales: list[dict[str, Any]],
    recruits: list[dict[str, Any]],
    repurchase: list[dict[str, Any]],
    lifecycle: list[dict[str, Any]],
) -> dict[str, str]:
    months = [_month(r["period"]) for r in sales]
    channels = sorted({r["channel"] or "-" for r in recruits})
    recruit_months = sorted({_month(r["period"]) for r in recruits})
    series = {
        c: {_month(r["period"]): r["new_members"] for r in recruits if (r["channel"] or "-") == c}
        for c in channels
    }
    data = {
        "recruits": {
            "x": recruit_months,
            "series": [
                {"name": c, "data": [series[c].get(m, 0) for m in recruit_months]} for c in channels
            ],
        },
        "sales": {
            "x": months,
            "sales": [round((r["net_sales"] or 0) / 100) for r in sales],
            "share": [r["member_share"] for r in sales],
        },
        "basket": {
            "x": months,
            "aov": [round((r["average_order_value"] or 0) / 100, 2) for r in sales],
            "upt": [r["units_per_transaction"] for r in sales],
        },
        "repurchase": {
            "x": [_month(r["period"]) for r in repurchase],
            "rate": [r.get("repurchase_rate") for r in repurchase],
        },
        "lifecycle": [{"name": r["stage"], "value": r["members"]} for r in lifecycle],
    }
    return {k: json.dumps(v, default=str) for k, v in data.items()}


# ---------------------------------------------------------------- members


@router.get("/members", response_class=HTMLResponse)
def member_search(request: Request, q: Annotated[str, Query(max_length=255)] = "") -> HTMLResponse:
    who, csrf = _page(request, P.VIEW_MEMBERS)
    found = member_view.search(_platform(request), who, q) if q else []
    name = "_results.html" if request.headers.get("hx-request") else "members.html"
    return render(request, name, who=who, csrf=csrf, q=q, results=found)


def _member_context(platform: Platform, who: Principal, member_id: int) -> dict[str, Any]:
    card = members.summary(platform, member_id, principal=who)
    pid = card["id"]
    membership = card["memberships"][0] if card["memberships"] else None
    context: dict[str, Any] = {
        "m": card,
        "membership": membership,
        "consents": insight.member_consents(platform, pid),
        "merges": members.merges_of(platform, pid),
        "tags": insight.member_tags(platform, pid),
        "coupons": coupons.member_coupons(platform, pid)[:20],
        "timeline": member_view.timeline(platform, who, pid),
        "lots": [],
        "entries": [],
        "tier": None,
        "projection": None,
        "templates": [],
        "tier_choices": [],
        "request_key": secrets.token_hex(12),
    }
    if membership is not None:
        context["lots"] = points.lots(platform, pid)
        context["entries"] = points.entries(platform, pid, limit=20)
        context["tier"] = tiers.current(platform, pid)
        context["projection"] = tiers.projection(platform, pid)
        if who.can(P.CHANGE_TIER):
            context["tier_choices"] = [
                {"code": x["tier"], "name": x["name"]} for x in context["projection"]["tiers"]
            ]
    if who.can(P.ISSUE_COUPONS):
        context["templates"] = [
            t for t in coupons.list_templates(platform) if t.get("status") == "active"
        ]
    return context


@router.get("/members/{member_id}", response_class=HTMLResponse)
def member_360(request: Request, member_id: MemberId) -> HTMLResponse:
    who, csrf = _page(request, P.VIEW_MEMBERS)
    platform = _platform(request)
    return render(
        request, "member.html", who=who, csrf=csrf, **_member_context(platform, who, member_id)
    )


@router.post("/members/{member_id}/reveal", response_class=HTMLResponse)
def member_reveal(request: Request, member_id: MemberId) -> HTMLResponse:
    who, csrf = _page(request, P.REVEAL_PII)
    _check_csrf(request, csrf, None)
    found = access.reveal(_platform(request), who, member_id)
    return render(request, "_identities.html", who=who, csrf=csrf, identities=found, revealed=True)


@router.post("/members/{member_id}/points", response_class=HTMLResponse)
def member_points(
    request: Request,
    member_id: MemberId,
    points_delta: Annotated[str, Form(alias="points", max_length=12)] = "",
    reason: Annotated[str, Form(max_length=500)] = "",
    csrf_token: Annotated[str | None, Form()] = None,
) -> HTMLResponse:
    who, csrf = _page(request, P.ADJUST_POINTS)
    _check_csrf(request, csrf, csrf_token)
    platform = _platform(request)
    access.check_member(platform, who, member_id)
    error = None
    gettext = i18n.translations(_lang(request, who)).gettext
    try:
        amount = int(points_delta)
        if amount == 0:
            raise ValueError
    except ValueError:
        error = gettext("Enter a whole number of points other than zero.")
    else:
        if not reason.strip():
            error = gettext("A reason is required.")
        else:
            try:
                points.adjust(platform, member_id, points=amount, reason=reason, actor=who.actor)
            except QuanyuError as exc:
                error = exc.detail
    context = _member_context(platform, who, member_id)
    return render(request, "_member_live.html", who=who, csrf=csrf, error=error, **context)


@router.post("/members/{member_id}/tier", response_model=None)
def member_tier(
    request: Request,
    member_id: MemberId,
    tier: Annotated[str, Form(max_length=64)],
    reason: Annotated[str, Form(max_length=500)] = "",
    csrf_token: Annotated[str | None, Form()] = None,
) -> Response:
    who, csrf = _page(request, P.CHANGE_TIER)
    _check_csrf(request, csrf, csrf_token)
    platform = _platform(request)
    pid = access.check_member(platform, who, member_id)
    try:
        tiers.change(platform, pid, tier=tier, reason=reason, actor=who.actor)
    except ValidationFailed as exc:
        context = _member_context(platform, who, pid)
        return render(
            request, "member.html", who=who, csrf=csrf, tier_error=exc.detail, status=422, **context
        )
    return RedirectResponse(f"/members/{pid}", status_code=303)


@router.post("/members/{member_id}/coupons", response_class=HTMLResponse)
def member_coupon(
    request: Request,
    member_id: MemberId,
    template: Annotated[str, Form(max_length=64)],
    request_key: Annotated[str, Form(max_length=64)],
    csrf_token: Annotated[str | None, Form()] = None,
) -> HTMLResponse:
    who, csrf = _page(request, P.ISSUE_COUPONS)
    _check_csrf(request, csrf, csrf_token)
    platform = _platform(request)
    pid = access.check_member(platform, who, member_id)
    error = None
    try:
        coupons.issue_batch(
            platform,
            coupons.BatchRequest(
                template=template,
                request_key=f"console:{request_key}",
                member_ids=(pid,),
                reason="issued in the console",
            ),
            actor=who.actor,
        )
    except QuanyuError as exc:
        error = exc.detail
    context = _member_context(platform, who, member_id)
    return render(request, "_member_live.html", who=who, csrf=csrf, error=error, **context)


def _lang(request: Request, who: Principal | None) -> str:
    return i18n.negotiate(
        who.language if who else request.cookies.get("quanyu_lang"),
        request.headers.get("accept-language"),
    )


# ---------------------------------------------------------------- segments


def _condition_from_form(form: dict[str, str]) -> dict[str, Any]:
    """The builder's rows as a condition: every filled row must hold (``all``)."""
    rows: list[dict[str, Any]] = []
    for i in range(BUILDER_ROWS):
        kind = form.get(f"kind{i}", "")
        value = form.get(f"value{i}", "").strip()
        if not kind or not value:
            continue
        op = form.get(f"op{i}", "eq")
        rows.append(_builder_row(kind, op, value, i))
    raw = form.get("condition", "").strip()
    if raw:
        try:
            rows.append(json.loads(raw))
        except json.JSONDecodeError as exc:
            raise ValidationFailed(f"not JSON: {exc.msg}", field="condition") from None
    if not rows:
        raise ValidationFailed("add at least one condition", field="condition")
    return rows[0] if len(rows) == 1 else {"all": rows}


def _builder_row(kind: str, op: str, value: str, i: int) -> dict[str, Any]:
    field = f"value{i}"
    if kind == "tier":
        return {"attr": "tier", "op": "in", "value": [v.strip() for v in value.split(",")]}
    if kind in ("home_store", "channel", "gender"):
        return {"attr": kind, "op": "in", "value": [v.strip() for v in value.split(",")]}
    if kind.startswith("tag:"):
        return {"tag": kind[4:], "op": "eq", "value": value}
    if kind in ("orders", "sales"):
        try:
            number = int(value) * (100 if kind == "sales" else 1)
        except ValueError:
            raise ValidationFailed("a whole number is needed", field=field) from None
        if op not in ("gte", "lte", "gt", "lt", "eq"):
            raise ValidationFailed("unknown comparison", field=f"op{i}")
        measure = "count" if kind == "orders" else "sales"
        return {"orders": measure, "within_days": 365, "op": op, "value": number}
    if kind == "points":
        if op not in ("gte", "lte", "gt", "lt", "eq"):
            raise ValidationFailed("unknown comparison", field=f"op{i}")
        try:
            number = int(value)
        except ValueError:
            raise ValidationFailed("a whole number is needed", field=field) from None
        return {"points": "balance", "op": op, "value": number}
    raise ValidationFailed("unknown kind of condition", field=f"kind{i}")


@router.get("/segments", response_class=HTMLResponse)
def segments_page(request: Request) -> HTMLResponse:
    who, csrf = _page(request, P.MANAGE_SEGMENTS)
    platform = _platform(request)
    return render(
        request,
        "segments.html",
        who=who,
        csrf=csrf,
        segments=insight.list_segments(platform),
        tags=insight.list_tags(platform),
        rows=BUILDER_ROWS,
    )


R = TypeVar("R", bound=Response)


async def _with_form(request: Request, fn: Callable[[Request, dict[str, str]], R]) -> R:
    """``fn(request, form fields)`` in the thread pool: the builder's fields vary, so
    the form is read whole, which only an async route can do."""
    form = {k: str(v) for k, v in (await request.form()).items()}
    return await run_in_threadpool(fn, request, form)


@router.post("/segments/count", response_class=HTMLResponse)
async def segment_count(request: Request) -> HTMLResponse:
    return await _with_form(request, _count)


def _count(request: Request, form: dict[str, str]) -> HTMLResponse:
    who, csrf = _page(request, P.MANAGE_SEGMENTS)
    _check_csrf(request, csrf, form.get("csrf_token"))
    try:
        condition = _condition_from_form(form)
        result = insight.count(_platform(request), condition)
        error = None
    except ValidationFailed as exc:
        condition, result, error = None, None, f"{exc.field}: {exc.detail}"
    return render(
        request,
        "_count.html",
        who=who,
        csrf=csrf,
        result=result,
        error=error,
        condition=json.dumps(condition, ensure_ascii=False) if condition else "",
    )


@router.post("/segments/overlap", response_class=HTMLResponse)
async def segment_overlap(request: Request) -> HTMLResponse:
    return await _with_form(request, _overlap)


def _overlap(request: Request, form: dict[str, str]) -> HTMLResponse:
    who, csrf = _page(request, P.MANAGE_SEGMENTS)
    _check_csrf(request, csrf, form.get("csrf_token"))
    platform = _platform(request)
    try:
        first = insight.segment(platform, form.get("first", ""))["condition"]
        second = insight.segment(platform, form.get("second", ""))["condition"]
        result = insight.overlap(platform, first, second)
        error = None
    except (ValidationFailed, NotFound) as exc:
        result, error = None, exc.detail
    return render(request, "_overlap.html", who=who, csrf=csrf, result=result, error=error)


@router.post("/segments/{code}/export", response_model=None)
async def segment_export(request: Request, code: str) -> Response:
    return await _with_form(request, lambda r, f: _export(r, f, code))


def _export(request: Request, form: dict[str, str], code: str) -> Response:
    who, csrf = _page(request, P.EXPORT)
    _check_csrf(request, csrf, form.get("csrf_token"))
    if not who.scope.everything:
        raise Forbidden("exports need access to every member", permission="all_members")
    body, _ = insight.export_audience(_platform(request), code=code, fmt="csv", actor=who.actor)
    return Response(
        body,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{code}.csv"'},
    )


# ---------------------------------------------------------------- coupons and the mall


@router.get("/coupons", response_class=HTMLResponse)
def coupons_page(request: Request) -> HTMLResponse:
    who, csrf = _page(request, P.VIEW_KPIS)
    platform = _platform(request)
    from quanyu.services import mall  # noqa: PLC0415

    report = reports.coupon_report(platform, as_of=platform.clock.now())
    return render(
        request,
        "coupons.html",
        who=who,
        csrf=csrf,
        templates_=coupons.list_templates(platform),
        totals={r["template"]: r for r in report["rows"] if r["level"] == "total"},
        batches=coupons.list_batches(platform, limit=20),
        rewards=mall.rewards(platform),
        windows=mall.windows(platform),
    )


# ---------------------------------------------------------------- stores and guides


@router.get("/stores", response_class=HTMLResponse)
def stores_page(
    request: Request, since: date | None = None, until: date | None = None
) -> HTMLResponse:
    who, csrf = _page(request, P.VIEW_KPIS)
    platform = _platform(request)
    today = platform.clock.now().astimezone(_tz(platform)).date()
    since, until = _period(since or today - timedelta(days=30), until, today)
    filters = access.scoped_filters(platform, who, {})
    by_store = insight.kpi_query(since=since, until=until, by=["store"], filters=filters)
    sales = {r["store"]: r for r in insight.kpi(platform, "sales", by_store)}
    recruits = {
        r["store"]: r["new_members"] for r in insight.kpi(platform, "new_members", by_store)
    }
    ref = platform.reference.get()
    stores = [
        {
            "code": s.code,
            "region": s.region,
            "sales": sales.get(s.code, {}),
            "new_members": recruits.get(s.code, 0),
        }
        for s in sorted(ref.stores.values(), key=lambda s: s.code)
        if who.scope.allows_store(s.id)
    ]
    by_guide = insight.kpi_query(since=since, until=until, by=["guide"], filters=filters)
    guide_recruits = {
        r["guide"]: r["new_members"] for r in insight.kpi(platform, "new_members", by_guide)
    }
    leaderboard = []
    for r in insight.kpi(
        platform, "guide_sales", insight.kpi_query(since=since, until=until, filters=filters)
    ):
        g = ref.guides.get(r["guide"])
        if g is None or not (who.scope.everything or who.scope.allows_store(g.store_id)):
            continue
        leaderboard.append(
            {
                **r,
                "store": ref.stores_by_id[g.store_id].code,
                "recruits": guide_recruits.get(r["guide"], 0),
            }
        )
    return render(
        request,
        "stores.html",
        who=who,
        csrf=csrf,
        since=since,
        until=until,
        stores=stores,
        leaderboard=leaderboard[:50],
    )


# ---------------------------------------------------------------- brand set-up


@router.get("/setup", response_class=HTMLResponse)
def setup_page(request: Request) -> HTMLResponse:
    who, csrf = _page(request, P.MANAGE_SETUP)
    platform = _platform(request)
    programs = setup.list_programs(platform)
    return render(
        request,
        "setup.html",
        who=who,
        csrf=csrf,
        programs=programs,
        tiers={p["code"]: setup.list_tiers(platform, p["code"]) for p in programs},
        rules={p["code"]: setup.earn_rules(platform, p["code"]) for p in programs},
        brands=setup.list_brands(platform),
        channels=setup.list_channels(platform),
        stores=setup.list_stores(platform),
        staff=access.list_staff(platform),
        keys=access.list_keys(platform),
    )


# ---------------------------------------------------------------- wiring


def install(app: FastAPI) -> None:
    """Mount the console on ``app``: pages, our own static files, and the front-end
    packages installed from the npm registry (``node_modules``, by ``make install``)."""
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    vendor = node_modules()
    if vendor is not None:
        app.mount("/vendor/htmx", StaticFiles(directory=vendor / "htmx.org" / "dist"), name="htmx")
        app.mount(
            "/vendor/echarts", StaticFiles(directory=vendor / "echarts" / "dist"), name="echarts"
        )

    @app.exception_handler(LoginRequired)
    async def _login(request: Request, exc: LoginRequired) -> Response:
        target = "/login?next=" + quote(request.url.path, safe="/")
        if request.headers.get("hx-request"):
            return Response(status_code=204, headers={"HX-Redirect": target})
        return RedirectResponse(target, status_code=303)


def node_modules() -> Path | None:
    """The ``node_modules`` that ``npm ci`` filled: the working directory's, else the
    source checkout's."""
    for base in (Path.cwd(), Path(__file__).resolve().parents[4]):
        candidate = base / "node_modules"
        if (candidate / "htmx.org").is_dir() and (candidate / "echarts").is_dir():
            return candidate
    return None


def html_error(request: Request, exc: QuanyuError, status: int) -> HTMLResponse:
    """A console page's error, as a page (or a fragment for HTMX)."""
    who, csrf = _session(request) or (None, None)
    name = "_error.html" if request.headers.get("hx-request") else "error.html"
    return render(request, name, who=who, csrf=csrf, status=status, error=exc, code=status)
