def repeat_join(word, times, sep):
    """word repeated times, joined with sep."""
    return sep.join([word] * times)
