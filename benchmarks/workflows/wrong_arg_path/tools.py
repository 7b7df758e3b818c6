def get_customer(customer_id):
    """The CRM's record of a customer."""
    customers = {
        "C1": {"name": "Ann", "tier": "gold"},
        "C2": {"name": "Bob", "tier": "basic"},
        "C3": {"name": "Chen", "tier": "silver"},
        "C4": {"name": "Dora", "tier": "gold"},
        "C5": {"name": "Emil", "tier": "basic"},
        "C6": {"name": "Fay", "tier": "silver"},
    }
    if customer_id not in customers:
        raise LookupError(f"unknown customer {customer_id!r}")
    return customers[customer_id]


def greet(name, tier):
    """A greeting line."""
    return f"Hello {name}, thank you for being a {tier} member!"
