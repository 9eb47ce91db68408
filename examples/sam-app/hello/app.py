import json
import os


def handler(event, context):
    name = (event.get("pathParameters") or {}).get("name") or event.get("name", "world")
    print(f"saying hello to {name}")
    return {
        "statusCode": 200,
        "headers": {"content-type": "application/json"},
        "body": json.dumps(
            {"message": f"Hello, {name}!", "stage": os.environ.get("STAGE"), "function": context.function_name}
        ),
    }
