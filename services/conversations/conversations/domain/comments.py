"""What a comment mentions (no IO)."""

from __future__ import annotations

import re

_MENTION = re.compile(r"(?<![\w.])@([\w.+-]+(?:@[\w-]+(?:\.[\w-]+)+)?)")


def mentioned_handles(body: str) -> set[str]:
    """Every @user-id / @email written in `body`, lower-cased (whether it names a member of the
    inbox is for the caller to look up; other @words are plain text)."""
    return {handle.lower().rstrip(".") for handle in _MENTION.findall(body)}
