def check_stock(sku):
    """Units of a product in the warehouse."""
    stock = {"S1": 0, "S2": 3, "S3": 12, "S4": 0, "S5": 1, "S6": 7, "S7": 0}
    return {"sku": sku, "quantity": stock[sku]}


def reserve(sku, quantity):
    """Reserve units for an order."""
    return {"sku": sku, "reserved": quantity, "status": "reserved"}


def backorder(sku, quantity):
    """Order units from the supplier when none are in stock."""
    return {"sku": sku, "reserved": 0, "status": "backordered", "eta_days": 14}
