"""The one exception every decoder in mipro.wire raises on bad input."""


class DecodeError(ValueError):
    """Truncated, overlong or inconsistent bytes.

    ``offset`` is the byte offset, from the start of the message handed to the
    decoder, at which the problem was found; ``reason`` says what is wrong.
    """

    def __init__(self, offset: int, reason: str) -> None:
        super().__init__(f"at byte {offset}: {reason}")
        self.offset = offset
        self.reason = reason
