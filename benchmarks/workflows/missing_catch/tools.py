def get_product(sku):
    """The catalogue entry of a product."""
    products = {
        "P1": {"sku": "P1", "name": "Kettle", "price": 29.0},
        "P2": {"sku": "P2", "name": "Toaster", "price": 35.5},
        "P3": {"sku": "P3", "name": "Blender", "price": 60.0},
        "P4": {"sku": "P4", "name": "Mixer", "price": 120.0},
    }
    return products[sku]


def record_view(sku, region):
    """Send a page-view event to the analytics service."""
    if region == "eu":
        raise PermissionError("tracking is disabled in region eu (consent required)")
    return {"recorded": sku}


def describe(product):
    """A product card."""
    return {"title": product["name"], "price": f"{product['price']:.2f} EUR"}
