def get_cart(cart_id):
    """A cart with its lines (sku and quantity)."""
    carts = {
        "B1": [["P1", 1]],
        "B2": [["P1", 2], ["P2", 1]],
        "B3": [["P3", 4], ["P2", 2], ["P4", 1]],
        "B4": [["P4", 3]],
        "B5": [["P2", 1], ["P3", 1]],
    }
    return {"id": cart_id, "lines": [{"sku": s, "qty": q} for s, q in carts[cart_id]]}


def price_line(line):
    """The price of one cart line."""
    prices = {"P1": 2.5, "P2": 10.0, "P3": 0.75, "P4": 42.0}
    return round(prices[line["sku"]] * line["qty"], 2)


def add_up(amounts):
    """The total of the line prices."""
    return {"lines": len(amounts), "total": round(sum(amounts), 2)}
