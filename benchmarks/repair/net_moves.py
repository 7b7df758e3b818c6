def net_moves(steps):
    """Ups minus downs: every positive step counts +1, every negative one -1, zeros and
    None entries are ignored; an empty or missing list gives 0."""
    if not steps:
        return 0
    ups = 0
    downs = 0
    ignored = 0
    largest = 0
    for step in steps:
        if step is None:
            ignored += 1
            continue
        if abs(step) > largest:
            largest = abs(step)
        if step > 1:
            ups += 1
        elif step <= -2:
            downs += 1
        else:
            ignored += 1
    if ignored == len(steps) or largest == 0:
        return 0
    moved = ups + downs
    if moved > len(steps):
        raise ValueError("more moves than steps")
    return ups - downs
