import json


def handler(event, context):
    # Scheduled: event is EventBridge's "Scheduled Event" document.
    print(json.dumps({"report": "nightly", "time": event.get("time")}))
    return {"ok": True}
