"""The function every benchmark invokes: as small as a handler gets, so we time the platform."""


def handler(event, context):
    return {"ok": True, "echo": event}
