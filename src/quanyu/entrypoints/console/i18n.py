"""The console's languages: zh-CN and en, from gettext catalogues, with Babel formats.

Messages are written in English in the templates (``{{ _("Members") }}``); the zh-CN
catalogue is ``locale/zh_CN/LC_MESSAGES/messages.po``. It is compiled in memory when the
console starts, so no build step is needed. ``pybabel extract -F babel.cfg`` finds new
messages (see docs/console.md).

A person's language is the one saved on their account; otherwise the browser's.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from functools import cache
from pathlib import Path
from zoneinfo import ZoneInfo

from babel import Locale, dates, numbers
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations

from quanyu.domain.access import LANGUAGES

DEFAULT = "zh-CN"
LOCALE_DIR = Path(__file__).parent / "locale"
NAMES = {"zh-CN": "中文", "en": "English"}


@cache
def translations(language: str) -> NullTranslations:
    if language == "en":
        return NullTranslations()
    po = LOCALE_DIR / language.replace("-", "_") / "LC_MESSAGES" / "messages.po"
    with po.open("rb") as fh:
        catalog = read_po(fh, locale=language.replace("-", "_"))
    buffer = io.BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return Translations(buffer)


@cache
def _locale(language: str) -> Locale:
    """Parsed once per language: a page formats hundreds of numbers and dates."""
    return Locale.parse(language.replace("-", "_"))


def negotiate(saved: str | None, accept_language: str | None) -> str:
    """The saved language, else the first of the browser's we speak, else zh-CN."""
    if saved in LANGUAGES:
        return str(saved)
    for part in (accept_language or "").split(","):
        tag = part.split(";")[0].strip().lower()
        if tag.startswith("zh"):
            return "zh-CN"
        if tag.startswith("en"):
            return "en"
    return DEFAULT


@dataclass(frozen=True)
class Formats:
    """Numbers, money and dates in one language, in the program's time zone."""

    language: str
    tz: ZoneInfo

    @property
    def locale(self) -> Locale:
        return _locale(self.language)

    def number(self, value: int | float | Decimal | None, digits: int = 0) -> str:
        if value is None:
            return "–"
        fmt = "#,##0" + ("." + "0" * digits if digits else "")
        return numbers.format_decimal(value, format=fmt, locale=self.locale)

    def percent(self, value: float | Decimal | None, digits: int = 1) -> str:
        if value is None:
            return "–"
        fmt = "0" + ("." + "0" * digits if digits else "") + "%"
        return numbers.format_percent(value, format=fmt, locale=self.locale)

    def money(self, minor: int | float | Decimal | None, currency: str = "CNY") -> str:
        """An amount in minor units (fen), as ¥1,234.50."""
        if minor is None:
            return "–"
        return numbers.format_currency(Decimal(str(minor)) / 100, currency, locale=self.locale)

    def date(self, value: date | datetime | None) -> str:
        if value is None:
            return "–"
        if isinstance(value, datetime):
            value = value.astimezone(self.tz).date()
        return dates.format_date(value, format="medium", locale=self.locale)

    def datetime(self, value: datetime | None) -> str:
        if value is None:
            return "–"
        return dates.format_datetime(
            value.astimezone(self.tz), format="medium", tzinfo=self.tz, locale=self.locale
        )
