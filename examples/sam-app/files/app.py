"""PUT, GET and DELETE /files/{key+}: objects in the app's bucket, with plain boto3
(the box sets AWS_ENDPOINT_URL_S3 and credentials for its workers)."""
import base64
import json
import os

import boto3

s3 = boto3.client("s3")
BUCKET = os.environ["BUCKET"]


def handler(event, context):
    key = event["pathParameters"]["key"]
    method = event["httpMethod"]
    if method == "PUT":
        body = event.get("body") or ""
        if event.get("isBase64Encoded"):
            body = base64.b64decode(body)
        s3.put_object(Bucket=BUCKET, Key=key, Body=body)
        return {"statusCode": 200, "body": json.dumps({"stored": key, "bucket": BUCKET})}
    if method == "GET":
        try:
            obj = s3.get_object(Bucket=BUCKET, Key=key)
        except s3.exceptions.NoSuchKey:
            return {"statusCode": 404, "body": json.dumps({"message": f"no such file: {key}"})}
        return {"statusCode": 200, "body": obj["Body"].read().decode()}
    if method == "DELETE":
        s3.delete_object(Bucket=BUCKET, Key=key)
        return {"statusCode": 204, "body": ""}
    return {"statusCode": 405, "body": json.dumps({"message": f"{method} is not allowed"})}
