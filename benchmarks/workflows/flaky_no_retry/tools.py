def get_order(order_id):
    """The order service's record of one order (it times out now and then)."""
    import random

    if random.random() < 0.3:
        raise TimeoutError("order service did not answer within 2 s")
    orders = {
        "A100": {"id": "A100", "status": "shipped", "total": 42.5},
        "A101": {"id": "A101", "status": "processing", "total": 19.0},
        "A102": {"id": "A102", "status": "delivered", "total": 7.25},
        "A103": {"id": "A103", "status": "shipped", "total": 120.0},
        "A104": {"id": "A104", "status": "cancelled", "total": 55.0},
        "A105": {"id": "A105", "status": "processing", "total": 80.0},
        "A106": {"id": "A106", "status": "delivered", "total": 13.0},
        "A107": {"id": "A107", "status": "shipped", "total": 230.0},
    }
    if order_id not in orders:
        raise KeyError(f"no order {order_id}")
    return orders[order_id]


def format_status(order):
    """One line for the customer about their order."""
    return f"Order {order['id']} is {order['status']} (total {order['total']:.2f} EUR)."
