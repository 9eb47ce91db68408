def handler(event, context):
    print(f"tick: {event}")
    return {"ok": True}
