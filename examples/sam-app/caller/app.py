"""Invokes HelloFunction through boto3's lambda client (the box sets
AWS_ENDPOINT_URL_LAMBDA for its workers)."""
import json
import os

import boto3

lam = boto3.client("lambda")


def handler(event, context):
    name = event["pathParameters"]["name"]
    result = lam.invoke(
        FunctionName=os.environ["HELLO_FUNCTION"],
        Payload=json.dumps({"pathParameters": {"name": name}}),
    )
    reply = json.loads(result["Payload"].read())
    return {
        "statusCode": 200,
        "body": json.dumps({"called": os.environ["HELLO_FUNCTION"], "reply": json.loads(reply["body"])}),
    }
