def get_order(order_id):
    """The order service (v2): id, status, items."""
    orders = {
        "Q1": ("shipped", 2), "Q2": ("processing", 1), "Q3": ("delivered", 4),
        "Q4": ("shipped", 1), "Q5": ("cancelled", 3), "Q6": ("processing", 5),
    }
    status, items = orders[order_id]
    return {"id": order_id, "status": status, "items": items}


def get_order_v1(order_id):
    """The retired v1 endpoint: the same orders with the old field names."""
    orders = {
        "Q1": ("shipped", 2), "Q2": ("processing", 1), "Q3": ("delivered", 4),
        "Q4": ("shipped", 1), "Q5": ("cancelled", 3), "Q6": ("processing", 5),
    }
    state, count = orders[order_id]
    return {"order_ref": order_id, "state": state, "item_count": count}


def summarize(order):
    """One line: the order, its status and how many items it holds."""
    return (f"{order.get('id', '?')}: {order.get('status', 'unknown')}, "
            f"{order.get('items', 0)} item(s)")
