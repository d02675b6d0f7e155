"""When demo people shop: the demo period and its seasonality.

Times are whole seconds from ``origin``, local midnight (China Standard Time, the
program's Asia/Shanghai) of the first full day of the period; the period ends at
local midnight of the day ``end`` falls on. Stores are busiest at weekends and in
the evening; online orders peak around 618 (June 1-18) and Double 11 (November
1-11), with smaller bumps on Double 12 and the member day (the 8th).
"""

from __future__ import annotations

import bisect
import itertools
from datetime import date, datetime, time, timedelta, timezone
from random import Random

CST = timezone(timedelta(hours=8), "CST")
DAY = 86_400

STORE_WEEKDAY = (0.8, 0.75, 0.8, 0.85, 1.05, 1.6, 1.5)
ONLINE_WEEKDAY = (1.0, 0.95, 0.95, 1.0, 1.05, 1.2, 1.15)
STORE_HOURS = (0,) * 10 + (3, 5, 6, 5, 6, 7, 7, 6, 7, 9, 8, 5) + (0, 0)
ONLINE_HOURS = (4, 2, 1, 1, 1, 1, 1, 2, 3, 4, 5, 6, 7, 6, 5, 5, 5, 6, 7, 8, 10, 12, 11, 8)


def _lift(day: date) -> tuple[float, float, bool]:
    """(store factor, online factor, is a sale period) of one local day."""
    m, d = day.month, day.day
    if m == 6 and d == 18:
        return 1.5, 7.0, True
    if m == 6 and d < 18:
        return 1.2, 2.2, True
    if m == 11 and d == 11:
        return 1.6, 10.0, True
    if m == 11 and d < 11:
        return 1.25, 2.8, True
    if m == 12 and d == 12:
        return 1.1, 2.5, True
    if m == 10 and d <= 7:
        return 1.5, 1.0, False  # National Day holiday
    if d == 8:
        return 1.3, 1.3, False  # member day
    return 1.0, 1.0, False


class Season:
    def __init__(self, end: datetime, years: int) -> None:
        if years < 1:
            raise ValueError("years must be at least 1")
        end_local = end.astimezone(CST)
        first = (end_local - timedelta(days=365 * years)).date() + timedelta(days=1)
        self.first_day = first
        self.origin = datetime.combine(first, time(0), CST)
        self.days = (end_local.date() - first).days
        self.horizon = self.days * DAY
        store: list[float] = []
        online: list[float] = []
        self.sale = bytearray(self.days)
        self.year_of_day: list[int] = []
        for i in range(self.days):
            day = first + timedelta(days=i)
            trend = 0.8 + 0.4 * i / self.days
            s, o, sale = _lift(day)
            store.append(trend * s * STORE_WEEKDAY[day.weekday()])
            online.append(trend * o * ONLINE_WEEKDAY[day.weekday()])
            self.sale[i] = sale
            self.year_of_day.append(day.year)
        self._days_cum = (
            [0.0, *itertools.accumulate(store)],
            [0.0, *itertools.accumulate(online)],
        )
        self._hours_cum = (
            list(itertools.accumulate(STORE_HOURS)),
            list(itertools.accumulate(ONLINE_HOURS)),
        )
        self._expiry = {
            y: (date(y + 2, 1, 1) - first).days * DAY for y in range(first.year, end_local.year + 1)
        }

    def sample(self, rng: Random, *, online: bool, first: int, last: int) -> int:
        """A second on a day in [first, last], drawn by the day's and the hour's weight."""
        cum = self._days_cum[online]
        u = cum[first] + rng.random() * (cum[last + 1] - cum[first])
        day = min(max(bisect.bisect_right(cum, u) - 1, first), last)
        hours = self._hours_cum[online]
        hour = bisect.bisect_right(hours, rng.random() * hours[-1])
        return day * DAY + hour * 3600 + rng.randrange(3600)

    def is_sale(self, at: int) -> bool:
        return bool(self.sale[at // DAY])

    def expiry(self, at: int) -> int:
        """When points earned at ``at`` expire: the end of the following local year."""
        return self._expiry[self.year_of_day[at // DAY]]

    def datetime(self, at: int) -> datetime:
        return self.origin + timedelta(seconds=at)
