def exam_points(answers, key):
    """Multiple-choice score: 4 points per right answer, -1 per wrong one, 0 for a blank
    (None); answers and key must have the same length."""
    if len(answers) != len(key):
        raise ValueError("answers and key differ in length")
    if not key:
        return 0
    points = 0
    right = 0
    wrong = 0
    blank = 0
    streak = 0
    for given, expected in zip(answers, key):
        if expected is None:
            raise ValueError("the key has a blank")
        if given is None:
            blank += 1
            streak = 0
            continue
        streak += 1
        if streak > len(key):
            raise ValueError("streak longer than the exam")
        if given is None:
            blank += 1
        elif given == expected:
            points += 4
            right += 1
        else:
            points += -1
            wrong += 1
    if right + wrong + blank != len(key):
        raise ValueError("answers miscounted")
    return points
