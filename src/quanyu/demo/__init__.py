"""The deterministic demo brand group: a believable dataset seeded through the services.

``seed_demo(platform, people=50_000, seed=7)`` creates the fictional Yunshan group
(two brands, one program, seven channels, 40 stores in eight cities, their guides and
a few hundred SKUs), then two years of shoppers: registrations, orders from every
channel with seasonal peaks, points payments, refunds and the identity fragments
that make OneID merge profiles. The data is a pure function of ``seed`` and
``people``; time comes only from the platform clock.

Modules: ``catalogue`` (set-up data), ``people`` (identity values), ``season`` (the
period and its seasonality), ``timeline`` (one person's planned events), ``spool``
(time-ordered, memory-bounded buffering) and ``seed`` (the entry point). It lives
beside the layers rather than in one: it is a client of the services, like the CLI.
"""

from quanyu.demo.seed import DemoSummary, seed_demo

__all__ = ["DemoSummary", "seed_demo"]
