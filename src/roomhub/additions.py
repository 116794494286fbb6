"""How a client asks for roomhub's additions to a replaced system's protocol.

The original clients (interactive-widgets' pages on ``<page>/ws``, Igor's clients on
``/actions``) read every frame they get as one of the original protocol's; a frame roomhub
adds (room state on join, notices, error frames with codes, the actions session frame) would
break them. So a face sends its additions only to a client whose socket URL carries
``roomhub=1``; roomhub's own browser client does. The value is a version, so that a later
set of additions can be asked for without surprising a client of this one.
"""

from __future__ import annotations

PARAMETER = "roomhub"
VERSIONS = ("1",)


def requested(value: str | None) -> bool:
    """Whether the query parameter ``roomhub`` (``value``; None when absent) asks for roomhub's
    additions. Raises :class:`ValueError` with a message for the client for a value other than
    one of :data:`VERSIONS`; each face turns it into its own bad-request answer."""
    if value is None:
        return False
    if value not in VERSIONS:
        raise ValueError(f"{PARAMETER}={value[:20]!r}: known values are {', '.join(VERSIONS)}")
    return True
