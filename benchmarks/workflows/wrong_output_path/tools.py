def shipping_zone(country):
    """The carrier's zone for a destination country."""
    zones = {"DE": "domestic", "FR": "eu", "IT": "eu", "US": "world", "JP": "world", "AT": "eu"}
    return {"country": country, "zone": zones[country]}


def quote_shipping(zone, weight_kg):
    """The price to ship a parcel to a zone."""
    base = {"domestic": 4.9, "eu": 9.5, "world": 24.0}[zone["zone"]]
    return {"zone": zone["zone"], "price": round(base + 1.5 * max(0.0, weight_kg - 1), 2)}
