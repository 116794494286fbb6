"""An access hook for the tests: ``?role=reader`` is read-only, room ``secret`` is denied."""

from roomhub.documents import AccessRequest


async def decide(request: AccessRequest) -> str:
    if request.room == "secret":
        return "deny"
    if request.query.get("role") == "reader":
        return "read-only"
    if request.room == "broken":
        raise RuntimeError("the hook fails")
    return "allow"
