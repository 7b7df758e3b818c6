def get_cart(cart_id):
    """The shop's cart: its items and total in EUR."""
    totals = {"K1": 40.0, "K2": 95.0, "K3": 120.0, "K4": 260.0, "K5": 640.0, "K6": 1500.0,
              "K7": 72.5}
    return {"id": cart_id, "total": totals[cart_id]}


def apply_discount(cart, percent):
    """The cart total after a percentage discount."""
    return round(cart["total"] * (100 - percent) / 100, 2)


def finalize(cart, discounted):
    """The amount to charge: the discounted total when a discount applied."""
    total = cart["total"] if discounted is None else discounted
    return {"cart": cart["id"], "charge": total, "discounted": discounted is not None}
