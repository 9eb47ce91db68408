"""Hello from ESB: a plain Lambda handler; nothing in it is ESB-specific.

Invoked directly it answers with JSON; behind an API Gateway route (an event
with `httpMethod`) it answers with a proxy response.
"""
import json
import os


def handler(event, context):
    event = event if isinstance(event, dict) else {}
    name = event.get("name") or (event.get("pathParameters") or {}).get("name") or "world"
    print(f"greeting {name}")
    result = {
        "message": f"Hello, {name}!",
        "function": context.function_name,
        "request_id": context.aws_request_id,
        "runtime": os.environ.get("AWS_EXECUTION_ENV"),
    }
    if "httpMethod" in event:
        return {
            "statusCode": 200,
            "headers": {"content-type": "application/json"},
            "body": json.dumps(result),
        }
    return result
