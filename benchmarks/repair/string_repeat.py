def repeat_join(word, times, sep):
    """word repeated times, joined with sep."""
    return word.join([sep] * times)
