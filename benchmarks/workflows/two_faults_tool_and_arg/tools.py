def get_customer(customer_id):
    """The CRM (v2): name and loyalty tier."""
    tiers = {"C1": "gold", "C2": "basic", "C3": "gold", "C4": "basic", "C5": "gold", "C6": "basic"}
    return {"id": customer_id, "tier": tiers[customer_id]}


def get_customer_v1(customer_id):
    """The retired CRM v1 endpoint: no loyalty tier."""
    return {"customer": customer_id, "level": None}


def shipping_price(country):
    """Shipping price to a country."""
    return {"DE": 4.9, "FR": 9.5, "US": 24.0, "JP": 24.0, "AT": 9.5}[country]


def apply_loyalty(price, customer):
    """Gold members ship at half price."""
    if customer.get("tier") == "gold":
        return round(price / 2, 2)
    return price
