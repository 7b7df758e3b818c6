def running_total(xs):
    """Prefix sums: [x0, x0+x1, ...]."""
    total = 0
    out = []
    for x in xs:
        total += x
        out.append(total)
    return out
