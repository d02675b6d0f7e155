from quanyu.services import points
from conftest import phone

def test_probe(shop, platform):
    m = shop.register(("phone", phone(1)))
    r = shop.order("A1", ("phone", phone(1)), paid=18000)
    assert r["points_earned"] == 180
    assert points.check_ledger(platform) == []
