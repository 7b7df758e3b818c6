def count_down(n, step):
    """The list n, n - step, ... of the values above 0 (step >= 1)."""
    out = []
    while n >= 0:
        out.append(n)
        n += step
    return out
