"""PUT/GET throughput of 1 KB, 1 MB and 64 MB objects: raw disk, ESB storage
and moto_server, side by side. Only loopback is contacted.

Usage: storage.py DATA_DIR ESB_URL MOTO_URL
"""
import os
import sys
import time

import boto3
import botocore.config

SIZES = [("1 KB", 1024, 400), ("1 MB", 1024 * 1024, 40), ("64 MB", 64 * 1024 * 1024, 3)]
KEY_ID, SECRET = "benchkey", "benchsecret0123456789"


def client(url):
    return boto3.client(
        "s3", endpoint_url=url, region_name="us-east-1",
        aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET,
        config=botocore.config.Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )


def timed(fn, n):
    t0 = time.perf_counter()
    for i in range(n):
        fn(i)
    return time.perf_counter() - t0


def raw(data_dir, size, n, blob):
    def put(i):
        with open(os.path.join(data_dir, f"raw-{i}"), "wb") as f:
            f.write(blob)

    def get(i):
        with open(os.path.join(data_dir, f"raw-{i}"), "rb") as f:
            assert len(f.read()) == size

    return timed(put, n), timed(get, n)


def s3(url, size, n, blob):
    c = client(url)
    bucket = f"bench-{size}"
    try:
        c.create_bucket(Bucket=bucket)
    except c.exceptions.BucketAlreadyOwnedByYou:
        pass

    def put(i):
        c.put_object(Bucket=bucket, Key=f"obj-{i}", Body=blob)

    def get(i):
        assert len(c.get_object(Bucket=bucket, Key=f"obj-{i}")["Body"].read()) == size

    return timed(put, n), timed(get, n)


def main():
    data_dir, esb, moto = sys.argv[1:4]
    print(f"{'size':>6} {'target':<12} {'PUT ops/s':>10} {'PUT MB/s':>9} {'GET ops/s':>10} {'GET MB/s':>9}")
    for label, size, n in SIZES:
        blob = os.urandom(size)
        for name, run in [("raw disk", lambda: raw(data_dir, size, n, blob)),
                          ("esb-storage", lambda: s3(esb, size, n, blob)),
                          ("moto_server", lambda: s3(moto, size, n, blob))]:
            put_s, get_s = run()
            mb = size * n / 1024 / 1024
            print(f"{label:>6} {name:<12} {n / put_s:>10.1f} {mb / put_s:>9.1f} {n / get_s:>10.1f} {mb / get_s:>9.1f}")


if __name__ == "__main__":
    main()
