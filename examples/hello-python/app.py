"""Hello from ESB: a plain Lambda handler; nothing in it is ESB-specific."""
import json
import os


def handler(event, context):
    name = event.get("name", "world") if isinstance(event, dict) else "world"
    print(f"greeting {name}")
    return {
        "message": f"Hello, {name}!",
        "function": context.function_name,
        "request_id": context.aws_request_id,
        "runtime": os.environ.get("AWS_EXECUTION_ENV"),
    }
