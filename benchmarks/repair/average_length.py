def average_length(words):
    """Mean length of the words (0 when there are none)."""
    total = 0
    for word in words:
        total = len(word)
    return total / len(words)
