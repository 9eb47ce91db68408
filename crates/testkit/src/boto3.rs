//! boto3 scripts against our servers, the way a user runs them: the SDK's
//! standard environment variables, with every endpoint pinned to loopback
//! (a service without one goes to a closed local port), the box's keys, and
//! no profile, config file or proxy. Nothing can reach AWS.
//!
//! A script fills the dict `out`, which comes back as JSON. The prelude
//! gives it `CONFIG` (one attempt, short timeouts), `lam` (a Lambda client),
//! `client_error(fn, **kwargs)` (the error a call must raise, as a dict),
//! `payload(response)` and `event(function, body)`.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;

const PRELUDE: &str = r#"
import base64, json, os, sqlite3, sys
import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

CONFIG = Config(retries={"max_attempts": 1}, connect_timeout=5, read_timeout=60)
lam = boto3.client("lambda", config=CONFIG)

def client_error(fn, **kwargs):
    try:
        fn(**kwargs)
    except ClientError as e:
        return {
            "code": e.response["Error"]["Code"],
            "message": e.response["Error"]["Message"],
            "status": e.response["ResponseMetadata"]["HTTPStatusCode"],
            "response": {k: v for k, v in e.response.items() if k not in ("Error", "ResponseMetadata")},
            "class": type(e).__name__,
        }
    raise AssertionError("the call succeeded but an error was expected")

def payload(r):
    return json.loads(r["Payload"].read() or b"null")

def event(function, body):
    r = lam.invoke(FunctionName=function, InvocationType="Event", Payload=json.dumps(body))
    return {"status": r["StatusCode"], "payload": r["Payload"].read().decode(),
            "request_id": r["ResponseMetadata"]["RequestId"],
            "version": r.get("ExecutedVersion")}

out = {}
"#;

/// How long a script may run.
const TIMEOUT: Duration = Duration::from_secs(120);

/// A boto3 environment: credentials, region and local endpoints.
#[derive(Debug, Clone)]
pub struct Boto3 {
    env: Vec<(String, String)>,
}

impl Boto3 {
    pub fn new(access_key_id: &str, secret_access_key: &str, region: &str) -> Boto3 {
        let env = [
            // Any service without its own endpoint below: a closed local port.
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:9"),
            ("AWS_ACCESS_KEY_ID", access_key_id),
            ("AWS_SECRET_ACCESS_KEY", secret_access_key),
            // botocore reads AWS_DEFAULT_REGION; other SDKs AWS_REGION.
            ("AWS_REGION", region),
            ("AWS_DEFAULT_REGION", region),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("AWS_CONFIG_FILE", "/dev/null"),
            ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null"),
            ("NO_PROXY", "127.0.0.1,localhost"),
        ];
        Boto3 {
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    /// The endpoint of one service, as `AWS_ENDPOINT_URL_<SERVICE>`
    /// (`LAMBDA`, `S3`).
    pub fn endpoint(self, service: &str, url: &str) -> Boto3 {
        self.env(&format!("AWS_ENDPOINT_URL_{service}"), url)
    }

    /// The CA that signed the endpoints' certificates.
    pub fn ca_bundle(self, ca: &Path) -> Boto3 {
        self.env("AWS_CA_BUNDLE", &ca.to_string_lossy())
    }

    /// Another variable the script reads.
    pub fn env(mut self, key: &str, value: &str) -> Boto3 {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    fn command(&self, script: &str) -> Command {
        let program = format!("{PRELUDE}\n{script}\nprint(json.dumps(out))\n");
        let mut command = Command::new(crate::python());
        command.arg("-c").arg(program);
        for key in [
            "AWS_PROFILE",
            "AWS_SESSION_TOKEN",
            "AWS_CA_BUNDLE",
            "HTTPS_PROXY",
            "https_proxy",
            "HTTP_PROXY",
            "http_proxy",
        ] {
            command.env_remove(key);
        }
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        command
    }

    /// Runs `script` and returns its `out`; panics with its output if it
    /// fails or does not finish in time.
    pub async fn run(&self, script: &str) -> Value {
        let output = tokio::process::Command::from(self.command(script))
            .kill_on_drop(true)
            .output();
        let output = tokio::time::timeout(TIMEOUT, output)
            .await
            .unwrap_or_else(|_| panic!("boto3 finishes within {TIMEOUT:?}"))
            .expect("python runs");
        parse(output)
    }

    /// [`Boto3::run`], blocking the calling thread (bounded by the
    /// prelude's connect and read timeouts).
    pub fn run_blocking(&self, script: &str) -> Value {
        parse(self.command(script).output().expect("python runs"))
    }
}

fn parse(output: Output) -> Value {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "boto3 script failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}
