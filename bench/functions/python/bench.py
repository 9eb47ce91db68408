def handler(event, context):
    return {"ok": True, "echo": event.get("n")}
