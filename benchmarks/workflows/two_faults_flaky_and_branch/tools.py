def get_order(order_id):
    """The order service's record of one order (it times out now and then)."""
    import random

    if random.random() < 0.3:
        raise TimeoutError("order service did not answer within 2 s")
    orders = {
        "R1": {"id": "R1", "status": "shipped", "payment_status": "paid"},
        "R2": {"id": "R2", "status": "processing", "payment_status": "paid"},
        "R3": {"id": "R3", "status": "shipped", "payment_status": "paid"},
        "R4": {"id": "R4", "status": "shipped", "payment_status": "pending"},
        "R5": {"id": "R5", "status": "shipped", "payment_status": "paid"},
        "R6": {"id": "R6", "status": "processing", "payment_status": "paid"},
        "R7": {"id": "R7", "status": "shipped", "payment_status": "pending"},
    }
    return orders[order_id]


def start_return(order):
    """Open a return for a shipped order: the customer gets a label."""
    return {"action": "return", "order_id": order["id"], "label": f"RMA-{order['id']}"}


def cancel_order(order_id):
    """Cancel an order that has not left the warehouse."""
    return {"action": "cancel", "order_id": order_id}
