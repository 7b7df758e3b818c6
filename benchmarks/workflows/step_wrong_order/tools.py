def sum_items(items):
    """The sum of quantity times unit price over the invoice lines."""
    return round(sum(line["qty"] * line["price"] for line in items), 2)


def compute_vat(amount):
    """20% VAT on an amount."""
    return round(amount * 0.2, 2)


def invoice(subtotal, vat):
    """The invoice figures."""
    return {"subtotal": subtotal, "vat": vat, "total": round(subtotal + vat, 2)}
