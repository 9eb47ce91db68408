"""POST /notes stores a note, GET /notes lists them: PostgreSQL through
DATABASE_URL, which the box sets for the template's database."""
import json
import os
from urllib.parse import unquote, urlparse

import pg8000.native

url = urlparse(os.environ["DATABASE_URL"])


def connect():
    return pg8000.native.Connection(
        user=unquote(url.username),
        password=unquote(url.password),
        host=url.hostname,
        port=url.port or 5432,
        database=url.path.lstrip("/"),
    )


def handler(event, context):
    conn = connect()
    try:
        conn.run("CREATE TABLE IF NOT EXISTS notes (id serial PRIMARY KEY, text text NOT NULL)")
        if event["httpMethod"] == "POST":
            text = json.loads(event.get("body") or "{}").get("text", "")
            rows = conn.run("INSERT INTO notes (text) VALUES (:text) RETURNING id", text=text)
            return {"statusCode": 201, "body": json.dumps({"id": rows[0][0], "text": text})}
        rows = conn.run("SELECT id, text FROM notes ORDER BY id")
        return {"statusCode": 200, "body": json.dumps([{"id": i, "text": t} for i, t in rows])}
    finally:
        conn.close()
