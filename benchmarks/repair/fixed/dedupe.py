def dedupe(xs):
    """Items of xs without repeats, first occurrence kept, in order."""
    seen = set()
    out = []
    for x in xs:
        if x not in seen:
            out.append(x)
            seen.add(x)
    return out
