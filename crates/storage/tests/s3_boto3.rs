//! Component tests: the real boto3 client against `esb_storage::serve` running
//! in-process on 127.0.0.1 with a temporary data directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use esb_storage::{
    serve, CancellationToken, Credentials, LifecycleSettings, Settings, StorageError,
};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

const ACCESS_KEY: &str = "esbtestaccesskey";
const SECRET_KEY: &str = "esbtestsecretkey0123456789";

/// A storage server on an ephemeral loopback port.
struct Server {
    addr: SocketAddr,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), StorageError>>,
}

impl Server {
    async fn start(dir: &Path) -> Server {
        Server::start_with(dir, LifecycleSettings::default()).await
    }

    async fn start_with(dir: &Path, lifecycle: LifecycleSettings) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let settings = Settings {
            data_dir: dir.to_path_buf(),
            credentials: Credentials::new(ACCESS_KEY, SECRET_KEY).expect("credentials"),
            lifecycle,
        };
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(serve(settings, listener, shutdown.clone()));
        Server {
            addr,
            shutdown,
            task,
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(15), self.task)
            .await
            .expect("serve returns after shutdown")
            .expect("serve task joins")
            .expect("serve ends without error");
    }

    /// Runs `body` after a prelude defining `s3` (a path-style boto3 client
    /// with the box's keys), `ENDPOINT`, `boto3`, `botocore` and `ClientError`.
    async fn python(&self, body: &str) -> String {
        run_python(self.addr, SECRET_KEY, body).await
    }
}

fn python() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let path = std::env::var_os("ESB_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join(".cache/venv/bin/python3"));
    assert!(
        path.exists(),
        "no Python with boto3 at {}: run scripts/install-deps or set ESB_TEST_PYTHON",
        path.display()
    );
    path
}

const PRELUDE: &str = r#"
import os, sys, hashlib, urllib.request, urllib.error
import boto3, botocore
from botocore.config import Config
from botocore.exceptions import ClientError
ENDPOINT = os.environ["ESB_TEST_ENDPOINT"]
s3 = boto3.client(
    "s3",
    endpoint_url=ENDPOINT,
    region_name="us-east-1",
    aws_access_key_id=os.environ["ESB_TEST_AK"],
    aws_secret_access_key=os.environ["ESB_TEST_SK"],
    config=Config(signature_version="s3v4", s3={"addressing_style": "path"},
                  retries={"max_attempts": 1},
                  connect_timeout=5, read_timeout=30),
)
def error_code(fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except ClientError as e:
        return e.response["Error"]["Code"]
    raise AssertionError("call succeeded but an error was expected")
"#;

async fn run_python(addr: SocketAddr, secret: &str, body: &str) -> String {
    let script = format!("{PRELUDE}\n{body}\n");
    let output = tokio::process::Command::new(python())
        .arg("-c")
        .arg(&script)
        .env("ESB_TEST_ENDPOINT", format!("http://{addr}"))
        .env("ESB_TEST_AK", ACCESS_KEY)
        .env("ESB_TEST_SK", secret)
        // Never reach AWS: no ambient profile, config or metadata service.
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ENDPOINT_URL")
        .env("NO_PROXY", "127.0.0.1")
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), output)
        .await
        .expect("python finishes within 60s")
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "python failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("esb-storage-test")
        .tempdir()
        .expect("temp dir")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_crud_copy_and_range() {
    let dir = temp_dir();
    let server = Server::start(dir.path()).await;
    let out = server
        .python(
            r#"
s3.create_bucket(Bucket="alpha")
names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
assert names == ["alpha"], names
s3.head_bucket(Bucket="alpha")
assert error_code(s3.head_bucket, Bucket="missing-bucket") in ("404", "NoSuchBucket")

body = b"hello, esb storage!"
put = s3.put_object(Bucket="alpha", Key="dir/hello.txt", Body=body, ContentType="text/plain",
                    Metadata={"owner": "esb"})
got = s3.get_object(Bucket="alpha", Key="dir/hello.txt")
assert got["Body"].read() == body
assert got["ContentType"] == "text/plain", got["ContentType"]
assert got["Metadata"] == {"owner": "esb"}, got["Metadata"]
assert got["ETag"] == put["ETag"]

head = s3.head_object(Bucket="alpha", Key="dir/hello.txt")
assert head["ContentLength"] == len(body), head
assert head["ETag"] == put["ETag"]

# Range GET.
part = s3.get_object(Bucket="alpha", Key="dir/hello.txt", Range="bytes=7-9")
assert part["Body"].read() == b"esb"
assert part["ContentRange"] == "bytes 7-9/%d" % len(body), part["ContentRange"]
assert part["ResponseMetadata"]["HTTPStatusCode"] == 206

# CopyObject.
s3.copy_object(Bucket="alpha", Key="copy.txt", CopySource={"Bucket": "alpha", "Key": "dir/hello.txt"})
assert s3.get_object(Bucket="alpha", Key="copy.txt")["Body"].read() == body

# Delete.
s3.delete_object(Bucket="alpha", Key="dir/hello.txt")
assert error_code(s3.get_object, Bucket="alpha", Key="dir/hello.txt") == "NoSuchKey"
assert error_code(s3.head_object, Bucket="alpha", Key="dir/hello.txt") == "404"
assert s3.get_object(Bucket="alpha", Key="copy.txt")["Body"].read() == body

# Buckets that still hold objects cannot be deleted.
assert error_code(s3.delete_bucket, Bucket="alpha") == "BucketNotEmpty"
s3.delete_object(Bucket="alpha", Key="copy.txt")
s3.delete_bucket(Bucket="alpha")
assert s3.list_buckets()["Buckets"] == []
print("ok")
"#,
        )
        .await;
    assert_eq!(out.trim(), "ok");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_objects_v2_prefix_and_pagination() {
    let dir = temp_dir();
    let server = Server::start(dir.path()).await;
    let out = server
        .python(
            r#"
s3.create_bucket(Bucket="listing")
keys = ["logs/%02d.txt" % i for i in range(5)] + ["other/a.txt", "top.txt"]
for k in keys:
    s3.put_object(Bucket="listing", Key=k, Body=k.encode())

everything = s3.list_objects_v2(Bucket="listing")
assert sorted(o["Key"] for o in everything["Contents"]) == sorted(keys), everything
assert everything["KeyCount"] == len(keys)

seen, token, pages = [], None, 0
while True:
    kw = {"Bucket": "listing", "Prefix": "logs/", "MaxKeys": 2}
    if token:
        kw["ContinuationToken"] = token
    page = s3.list_objects_v2(**kw)
    pages += 1
    assert page["KeyCount"] <= 2, page
    seen += [o["Key"] for o in page.get("Contents", [])]
    if not page["IsTruncated"]:
        break
    token = page["NextContinuationToken"]
assert seen == ["logs/%02d.txt" % i for i in range(5)], seen
assert pages == 3, pages

# The paginator and delimiter (common prefixes).
pag = s3.get_paginator("list_objects_v2")
n = sum(len(p.get("Contents", [])) for p in pag.paginate(Bucket="listing", PaginationConfig={"PageSize": 3}))
assert n == len(keys), n
tree = s3.list_objects_v2(Bucket="listing", Delimiter="/")
assert sorted(p["Prefix"] for p in tree["CommonPrefixes"]) == ["logs/", "other/"], tree
assert [o["Key"] for o in tree["Contents"]] == ["top.txt"], tree
print("ok")
"#,
        )
        .await;
    assert_eq!(out.trim(), "ok");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_upload_and_batch_delete() {
    let dir = temp_dir();
    let server = Server::start(dir.path()).await;
    let out = server
        .python(
            r#"
s3.create_bucket(Bucket="big")
part1 = os.urandom(5 * 1024 * 1024)
part2 = os.urandom(1024 * 1024 + 123)
mpu = s3.create_multipart_upload(Bucket="big", Key="blob.bin")
uid = mpu["UploadId"]
e1 = s3.upload_part(Bucket="big", Key="blob.bin", UploadId=uid, PartNumber=1, Body=part1)["ETag"]
e2 = s3.upload_part(Bucket="big", Key="blob.bin", UploadId=uid, PartNumber=2, Body=part2)["ETag"]
parts = s3.list_parts(Bucket="big", Key="blob.bin", UploadId=uid)["Parts"]
assert [(p["PartNumber"], p["Size"]) for p in parts] == [(1, len(part1)), (2, len(part2))], parts
s3.complete_multipart_upload(Bucket="big", Key="blob.bin", UploadId=uid,
    MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]})
data = s3.get_object(Bucket="big", Key="blob.bin")["Body"].read()
assert len(data) == len(part1) + len(part2), len(data)
assert hashlib.sha256(data).digest() == hashlib.sha256(part1 + part2).digest()
tail = s3.get_object(Bucket="big", Key="blob.bin", Range="bytes=%d-" % len(part1))["Body"].read()
assert tail == part2

# Aborted uploads leave no object.
uid2 = s3.create_multipart_upload(Bucket="big", Key="aborted.bin")["UploadId"]
s3.upload_part(Bucket="big", Key="aborted.bin", UploadId=uid2, PartNumber=1, Body=b"x" * 10)
s3.abort_multipart_upload(Bucket="big", Key="aborted.bin", UploadId=uid2)
assert error_code(s3.head_object, Bucket="big", Key="aborted.bin") == "404"

# DeleteObjects (batch).
for i in range(4):
    s3.put_object(Bucket="big", Key="batch/%d" % i, Body=b"x")
res = s3.delete_objects(Bucket="big", Delete={"Objects": [{"Key": "batch/%d" % i} for i in range(3)]})
assert sorted(d["Key"] for d in res["Deleted"]) == ["batch/0", "batch/1", "batch/2"], res
assert not res.get("Errors"), res
left = [o["Key"] for o in s3.list_objects_v2(Bucket="big", Prefix="batch/")["Contents"]]
assert left == ["batch/3"], left
print("ok")
"#,
        )
        .await;
    assert_eq!(out.trim(), "ok");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigv4_is_enforced_and_presigned_urls_work() {
    let dir = temp_dir();
    let server = Server::start(dir.path()).await;
    let out = server
        .python(
            r#"
s3.create_bucket(Bucket="secure")
s3.put_object(Bucket="secure", Key="doc.txt", Body=b"secret contents")

def http_error(url, method="GET"):
    try:
        urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=10)
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    raise AssertionError("request to %s succeeded" % url)

# Presigned GET with plain urllib (no SDK on the fetching side).
url = s3.generate_presigned_url("get_object", Params={"Bucket": "secure", "Key": "doc.txt"}, ExpiresIn=300)
assert "X-Amz-Signature=" in url, url
with urllib.request.urlopen(url, timeout=10) as r:
    assert r.status == 200 and r.read() == b"secret contents"

# An expired presigned URL is refused (the signature itself is valid).
short = s3.generate_presigned_url("get_object", Params={"Bucket": "secure", "Key": "doc.txt"}, ExpiresIn=1)
import time
time.sleep(2.1)
status, body = http_error(short)
assert status == 403 and "<Code>AccessDenied</Code>" in body, (status, body)

# A tampered presigned URL is refused.
status, body = http_error(url.replace("doc.txt", "other.txt"))
assert status == 403 and "<Code>SignatureDoesNotMatch</Code>" in body, (status, body)

# Unsigned (anonymous) requests are refused with S3's XML error.
status, body = http_error(ENDPOINT + "/secure/doc.txt")
assert status == 403 and "<Code>AccessDenied</Code>" in body, (status, body)
status, body = http_error(ENDPOINT + "/secure/doc.txt", method="PUT")
assert status == 403, (status, body)

# The right key id with a wrong secret.
bad = boto3.client("s3", endpoint_url=ENDPOINT, region_name="us-east-1",
    aws_access_key_id=os.environ["ESB_TEST_AK"], aws_secret_access_key="wrong-secret",
    config=Config(signature_version="s3v4", s3={"addressing_style": "path"},
                  retries={"max_attempts": 1}))
assert error_code(bad.get_object, Bucket="secure", Key="doc.txt") == "SignatureDoesNotMatch"
assert error_code(bad.put_object, Bucket="secure", Key="evil.txt", Body=b"x") == "SignatureDoesNotMatch"
assert error_code(bad.list_buckets) == "SignatureDoesNotMatch"

# An unknown key id.
stranger = boto3.client("s3", endpoint_url=ENDPOINT, region_name="us-east-1",
    aws_access_key_id="UNKNOWNKEY", aws_secret_access_key="whatever",
    config=Config(signature_version="s3v4", s3={"addressing_style": "path"},
                  retries={"max_attempts": 1}))
code = error_code(stranger.get_object, Bucket="secure", Key="doc.txt")
assert code == "InvalidAccessKeyId", code

# Nothing was written by the refused requests.
assert [o["Key"] for o in s3.list_objects_v2(Bucket="secure")["Contents"]] == ["doc.txt"]

# Readiness route: unauthenticated GET.
with urllib.request.urlopen(ENDPOINT + "/_esb/health", timeout=10) as r:
    assert r.status == 200 and r.read() == b"ok\n"
print("ok")
"#,
        )
        .await;
    assert_eq!(out.trim(), "ok");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_persists_across_restart() {
    let dir = temp_dir();
    let server = Server::start(dir.path()).await;
    server
        .python(
            r#"
s3.create_bucket(Bucket="durable")
s3.put_object(Bucket="durable", Key="a/b.txt", Body=b"still here", Metadata={"k": "v"})
"#,
        )
        .await;
    let first_addr = server.addr;
    server.stop().await;
    // The old port is closed after shutdown.
    assert!(tokio::net::TcpStream::connect(first_addr).await.is_err());

    let server = Server::start(dir.path()).await;
    let out = server
        .python(
            r#"
assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == ["durable"]
got = s3.get_object(Bucket="durable", Key="a/b.txt")
assert got["Body"].read() == b"still here"
assert got["Metadata"] == {"k": "v"}, got["Metadata"]
print("ok")
"#,
        )
        .await;
    assert_eq!(out.trim(), "ok");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_expiration_deletes_old_objects() {
    let dir = temp_dir();
    // A one-minute "day" and a fast sweep; objects are aged by moving their
    // modification time back, so nothing depends on wall-clock races.
    let lifecycle = LifecycleSettings {
        day: Duration::from_secs(60),
        sweep_interval: Duration::from_millis(100),
    };
    let server = Server::start_with(dir.path(), lifecycle).await;
    server
        .python(
            r#"
s3.create_bucket(Bucket="aging")
assert error_code(s3.get_bucket_lifecycle_configuration, Bucket="aging") == "NoSuchLifecycleConfiguration"
assert error_code(s3.put_bucket_lifecycle_configuration, Bucket="aging", LifecycleConfiguration={"Rules": [
    {"ID": "bad", "Status": "Enabled", "Filter": {"Prefix": ""}, "Expiration": {"Days": 0}}]}) == "InvalidArgument"
assert error_code(s3.put_bucket_lifecycle_configuration, Bucket="aging", LifecycleConfiguration={"Rules": [
    {"ID": "tagged", "Status": "Enabled", "Filter": {"Tag": {"Key": "k", "Value": "v"}}, "Expiration": {"Days": 1}}]}) == "NotImplemented"
s3.put_bucket_lifecycle_configuration(Bucket="aging", LifecycleConfiguration={"Rules": [
    {"ID": "tmp-1d", "Status": "Enabled", "Filter": {"Prefix": "tmp/"}, "Expiration": {"Days": 1}},
    {"ID": "off", "Status": "Disabled", "Filter": {"Prefix": "keep/"}, "Expiration": {"Days": 1}},
]})
rules = s3.get_bucket_lifecycle_configuration(Bucket="aging")["Rules"]
assert [(r["ID"], r["Status"], r["Expiration"]["Days"]) for r in rules] == [("tmp-1d", "Enabled", 1), ("off", "Disabled", 1)], rules
for k in ["tmp/old", "tmp/new", "keep/old"]:
    s3.put_object(Bucket="aging", Key=k, Body=k.encode())
"#,
        )
        .await;

    // Two "days" old: tmp/old (expires), keep/old (its rule is disabled).
    let aged = std::time::SystemTime::now() - Duration::from_secs(120);
    for key in ["tmp/old", "keep/old"] {
        let file = std::fs::File::options()
            .write(true)
            .open(dir.path().join("aging").join(key))
            .expect("object file");
        file.set_modified(aged).expect("set mtime");
    }

    let out = server
        .python(
            r#"
import time
deadline = time.time() + 20
while True:
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="aging").get("Contents", []))
    if "tmp/old" not in keys:
        break
    assert time.time() < deadline, "tmp/old was not expired: %s" % keys
    time.sleep(0.1)
assert keys == ["keep/old", "tmp/new"], keys
assert error_code(s3.get_object, Bucket="aging", Key="tmp/old") == "NoSuchKey"

s3.delete_bucket_lifecycle(Bucket="aging")
assert error_code(s3.get_bucket_lifecycle_configuration, Bucket="aging") == "NoSuchLifecycleConfiguration"
print("ok")
"#,
        )
        .await;
    assert_eq!(out.trim(), "ok");
    server.stop().await;
}
