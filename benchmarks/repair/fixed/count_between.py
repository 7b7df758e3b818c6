def count_between(xs, lo, hi):
    """How many numbers of xs lie in [lo, hi]; None entries are skipped, lo and hi may come
    in either order, and a list without numbers counts 0."""
    if xs is None:
        return 0
    if lo > hi:
        lo, hi = hi, lo
    count = 0
    seen = 0
    for x in xs:
        if x is None:
            continue
        seen += 1
        if lo <= x and x < hi + 1:
            count += 1
    if seen == 0:
        return 0
    return count
