//! End to end on real Docker Compose: `esb build` and `esb up --wait` of the
//! example SAM app under a unique project with every port 0, then what a
//! user does: HTTPS requests with auth, S3 from the host (boto3) and from a
//! function, a function invoking another through boto3, PostgreSQL from a
//! function, `esb invoke`, `esb logs`, an incremental rebuild picked up
//! without a restart, scale to zero, and `esb down -v` leaving nothing.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{boto3, copy_dir, docker_lines, eventually, login, App, Mode, ESB};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_app_runs_as_a_box() {
    the_example_app_runs(Mode::Docker, "box").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_app_runs_as_a_box_in_containerd_mode() {
    the_example_app_runs(Mode::Containerd, "ctd").await;
}

/// Workers of `function`: the agent's labelled containers in docker mode;
/// in containerd mode the gateway's view, every worker on the CNI bridge.
async fn workers(
    mode: Mode,
    app: &App,
    client: &reqwest::Client,
    gateway: &str,
    token: &str,
    function: &str,
) -> Result<usize, String> {
    match mode {
        Mode::Docker => Ok(docker_lines(&[
            "ps",
            "-q",
            "--filter",
            &format!("label=esb.stack={}", app.project),
            "--filter",
            &format!("label=esb.function={function}"),
        ])
        .len()),
        Mode::Containerd => {
            let body: Value = client
                .get(format!("{gateway}/admin/v1/workers"))
                .bearer_auth(token)
                .send()
                .await
                .map_err(|e| e.to_string())?
                .json()
                .await
                .map_err(|e| e.to_string())?;
            let list = body["workers"].as_array().cloned().unwrap_or_default();
            for w in &list {
                let address = w["address"].as_str().unwrap_or_default();
                assert!(
                    address.contains("10.88."),
                    "a containerd worker off the CNI bridge: {w}"
                );
            }
            Ok(list.iter().filter(|w| w["function"] == function).count())
        }
    }
}

async fn the_example_app_runs(mode: Mode, tag: &str) {
    let app = App::new(tag);
    let build = app.esb(&["build", "--mode", mode.as_str()]);
    assert!(build.status.success(), "esb build failed");
    if mode == Mode::Containerd {
        // No registry yet: up pushes the images.
        let report = String::from_utf8_lossy(&build.stderr);
        assert!(report.contains("registry is not running"), "{report}");
    }
    app.esb_ok(&["up", "--mode", mode.as_str(), "--wait"]);
    let info: Value = serde_json::from_str(&app.esb_ok(&["info", "--json"])).expect("info json");
    assert_eq!(info["mode"], mode.as_str());
    assert_eq!(info["project"], app.project.as_str());
    let gateway = info["endpoints"]["gateway"]
        .as_str()
        .expect("gateway")
        .to_owned();
    assert!(gateway.starts_with("https://127.0.0.1:"), "{gateway}");
    assert!(
        !gateway.ends_with(":8443"),
        "port 0 must pick a free port: {gateway}"
    );
    let ca = std::fs::read(info["ca_cert"].as_str().expect("ca")).expect("read ca");
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("ca pem"))
        .build()
        .expect("client");
    let creds = info["credentials"].clone();

    // A public route, over HTTPS with the box's CA.
    let hello: Value = client
        .get(format!("{gateway}/hello/ESB"))
        .send()
        .await
        .expect("hello")
        .json()
        .await
        .expect("hello json");
    assert_eq!(hello["message"], "Hello, ESB!");
    assert_eq!(hello["stage"], "dev");

    // Authenticated routes need the IdToken.
    let denied = client
        .put(format!("{gateway}/files/a.txt"))
        .body("x")
        .send()
        .await
        .expect("files");
    assert_eq!(denied.status(), 401);
    let token = login(&client, &gateway, &creds).await;

    // S3 from a function, read back from the host with boto3, and the other way.
    let stored = client
        .put(format!("{gateway}/files/docs/a.txt"))
        .bearer_auth(&token)
        .body("written by a function")
        .send()
        .await
        .expect("put file");
    assert_eq!(stored.status(), 200, "{:?}", stored.text().await);
    let bucket = format!("{}-files", app.project);
    let from_host = boto3(&info)
        .run(&format!(
            r#"
s3 = boto3.client("s3", config=CONFIG)
out["read"] = s3.get_object(Bucket="{bucket}", Key="docs/a.txt")["Body"].read().decode()
s3.put_object(Bucket="{bucket}", Key="docs/b.txt", Body=b"written by the host")
out["rules"] = s3.get_bucket_lifecycle_configuration(Bucket="{bucket}")["Rules"]
"#
        ))
        .await;
    assert_eq!(from_host["read"], "written by a function");
    assert_eq!(
        from_host["rules"][0]["Expiration"]["Days"], 1,
        "{from_host}"
    );
    let read = client
        .get(format!("{gateway}/files/docs/b.txt"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("get file");
    assert_eq!(read.text().await.expect("body"), "written by the host");

    // One function invokes another with boto3's lambda client.
    let called: Value = client
        .get(format!("{gateway}/call/friend"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("call")
        .json()
        .await
        .expect("call json");
    assert_eq!(called["called"], "HelloFunction");
    assert_eq!(called["reply"]["message"], "Hello, friend!");

    // PostgreSQL from a function, through DATABASE_URL.
    let note: Value = client
        .post(format!("{gateway}/notes"))
        .bearer_auth(&token)
        .json(&json!({"text": "remember the milk"}))
        .send()
        .await
        .expect("post note")
        .json()
        .await
        .expect("note json");
    assert_eq!(note["text"], "remember the milk");
    let notes: Value = client
        .get(format!("{gateway}/notes"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("notes")
        .json()
        .await
        .expect("notes json");
    assert!(
        notes
            .as_array()
            .is_some_and(|n| n.iter().any(|x| x["text"] == "remember the milk")),
        "{notes}"
    );

    // The box's scheduler ran TickFunction (a new rate schedule runs at
    // once) through the durable queue in the box's PostgreSQL.
    eventually(
        "the scheduled TickFunction run",
        Duration::from_secs(30),
        || {
            let client = client.clone();
            let url = format!("{gateway}/admin/v1/invocations?status=succeeded");
            let token = token.clone();
            async move {
                let body: Value = client
                    .get(url)
                    .bearer_auth(token)
                    .send()
                    .await
                    .map_err(|e| e.to_string())?
                    .json()
                    .await
                    .map_err(|e| e.to_string())?;
                let ran = body["invocations"]
                    .as_array()
                    .is_some_and(|list| list.iter().any(|i| i["function"] == "TickFunction"));
                if ran {
                    Ok(())
                } else {
                    Err(body.to_string())
                }
            }
        },
    )
    .await;

    // esb invoke and esb logs.
    let out = app.esb_ok(&["invoke", "HelloFunction", "--payload", r#"{"name": "cli"}"#]);
    assert!(out.contains("Hello, cli!"), "{out}");
    // Docker workers' logs, or in containerd mode the tasks' log files.
    let logs = app.esb_ok(&["logs", "HelloFunction"]);
    for needle in [
        "START RequestId:",
        "END RequestId:",
        "REPORT RequestId:",
        "saying hello to cli",
    ] {
        assert!(
            logs.contains(needle),
            "`esb logs HelloFunction` ({}) lacks {needle:?}:\n{logs}",
            mode.as_str()
        );
    }
    let status: Value =
        serde_json::from_str(&app.esb_ok(&["status", "--json"])).expect("status json");
    assert!(
        status["services"].as_array().is_some_and(|s| s.len() >= 4),
        "{status}"
    );

    // An incremental rebuild: only the changed function is rebuilt, and the
    // running gateway serves it without a restart.
    let code = app.dir.join("hello/app.py");
    let text = std::fs::read_to_string(&code).expect("read");
    std::fs::write(&code, text.replace("Hello, ", "Hi again, ")).expect("write");
    let out = app.esb(&["build"]);
    assert!(out.status.success());
    let report = String::from_utf8_lossy(&out.stderr);
    assert!(report.contains("1 rebuilt"), "{report}");
    if mode == Mode::Containerd {
        // The box's mode is kept, and its registry runs: pushed at once.
        assert!(report.contains("containerd mode"), "{report}");
        assert!(report.contains("pushed esb-fn-"), "{report}");
    }
    eventually("the new HelloFunction", Duration::from_secs(30), || {
        let client = client.clone();
        let url = format!("{gateway}/hello/ESB");
        async move {
            let body = client
                .get(url)
                .send()
                .await
                .map_err(|e| e.to_string())?
                .text()
                .await
                .map_err(|e| e.to_string())?;
            if body.contains("Hi again, ESB!") {
                Ok(())
            } else {
                Err(body)
            }
        }
    })
    .await;

    // Scale to zero after the idle timeout, and back on the next request.
    let now = workers(mode, &app, &client, &gateway, &token, "HelloFunction").await;
    assert!(now.expect("workers") >= 1);
    eventually("scale to zero", Duration::from_secs(40), || {
        let (client, gateway, token, app) = (&client, &gateway, &token, &app);
        async move {
            match workers(mode, app, client, gateway, token, "HelloFunction").await? {
                0 => Ok(()),
                n => Err(format!("{n} workers")),
            }
        }
    })
    .await;
    let again = client
        .get(format!("{gateway}/hello/zero"))
        .send()
        .await
        .expect("hello");
    assert_eq!(again.status(), 200);

    // down keeps the data: the box comes back with its objects and rows.
    app.esb_ok(&["down"]);
    app.esb_ok(&["up", "--mode", mode.as_str(), "--wait"]);
    let info: Value = serde_json::from_str(&app.esb_ok(&["info", "--json"])).expect("info json");
    let gateway = info["endpoints"]["gateway"]
        .as_str()
        .expect("gateway")
        .to_owned();
    let token = login(&client, &gateway, &creds).await;
    let kept = client
        .get(format!("{gateway}/files/docs/b.txt"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("get file");
    assert_eq!(kept.text().await.expect("body"), "written by the host");
    let notes: Value = client
        .get(format!("{gateway}/notes"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("notes")
        .json()
        .await
        .expect("notes json");
    assert!(
        notes
            .as_array()
            .is_some_and(|n| n.iter().any(|x| x["text"] == "remember the milk")),
        "{notes}"
    );

    // down -v leaves nothing behind.
    app.esb_ok(&["down", "-v"]);
    let label = format!("label=com.docker.compose.project={}", app.project);
    assert!(
        docker_lines(&["ps", "-aq", "--filter", &label]).is_empty(),
        "containers left"
    );
    assert!(
        docker_lines(&[
            "ps",
            "-aq",
            "--filter",
            &format!("label=esb.stack={}", app.project)
        ])
        .is_empty(),
        "workers left"
    );
    assert!(
        docker_lines(&["network", "ls", "-q", "--filter", &label]).is_empty(),
        "networks left"
    );
    assert!(
        docker_lines(&["volume", "ls", "-q", "--filter", &label]).is_empty(),
        "volumes left"
    );
}

#[test]
fn bad_input_gets_a_one_line_error_and_starts_nothing() {
    let app = App::new("bad");
    // A malformed template: exit 65, file and line named.
    std::fs::write(
        app.dir.join("template.yaml"),
        "Transform: AWS::Serverless-2016-10-31\nResources:\n  Fn:\n    Type: AWS::Serverless::Function\n    Properties: [oops\n",
    )
    .expect("write");
    let out = app.esb(&["build"]);
    assert_eq!(out.status.code(), Some(65));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("template.yaml:"), "{err}");

    // An unknown runtime: the line of the Runtime.
    std::fs::write(
        app.dir.join("template.yaml"),
        "Transform: AWS::Serverless-2016-10-31\nResources:\n  Fn:\n    Type: AWS::Serverless::Function\n    Properties:\n      CodeUri: hello/\n      Handler: app.handler\n      Runtime: cobol85\n",
    )
    .expect("write");
    let out = app.esb(&["build"]);
    assert_eq!(out.status.code(), Some(65));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("template.yaml:8:") && err.contains("cobol85"),
        "{err}"
    );

    // No Docker daemon: exit 69, one line.
    let out = Command::new(ESB)
        .args(["up"])
        .current_dir(&app.dir)
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .env("ESB_PROJECT", &app.project)
        .output()
        .expect("esb");
    assert_eq!(out.status.code(), Some(69));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("Docker daemon"), "{err}");

    // An occupied port: exit 69 naming the variable, and no container started.
    std::fs::remove_dir_all(&app.dir).expect("rm");
    copy_dir(
        &esb_testkit::workspace_root().join("examples/sam-app"),
        &app.dir,
    );
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = busy.local_addr().expect("addr").port().to_string();
    let out = Command::new(ESB)
        .args(["up"])
        .current_dir(&app.dir)
        .env("ESB_PROJECT", &app.project)
        .env(
            "ESB_PIP",
            format!("{} -m pip", esb_testkit::python().display()),
        )
        .env("ESB_PORT_GATEWAY_HTTPS", &port)
        .envs(
            [
                "ESB_PORT_GATEWAY_HTTP",
                "ESB_PORT_GRPC",
                "ESB_PORT_S3",
                "ESB_PORT_DATABASE",
                "ESB_PORT_LOGS",
            ]
            .map(|v| (v, "0")),
        )
        .output()
        .expect("esb");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(69), "{err}");
    assert!(
        err.contains(&format!("port {port}")) && err.contains("ESB_PORT_GATEWAY_HTTPS"),
        "{err}"
    );
    let label = format!("label=com.docker.compose.project={}", app.project);
    assert!(docker_lines(&["ps", "-aq", "--filter", &label]).is_empty());
}

#[test]
fn init_scaffolds_an_app_that_builds() {
    let dir = std::env::temp_dir().join(format!("esb-init-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = Command::new(ESB)
        .args(["init"])
        .arg(&dir)
        .output()
        .expect("esb init");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A second init does not overwrite the app.
    let again = Command::new(ESB)
        .args(["init"])
        .arg(&dir)
        .output()
        .expect("esb init");
    assert_eq!(again.status.code(), Some(64));
    let out = Command::new(ESB)
        .arg("build")
        .current_dir(&dir)
        .env("ESB_PROJECT", format!("init{}", std::process::id()))
        .output()
        .expect("esb build");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("HelloFunction") && err.contains("1 rebuilt"),
        "{err}"
    );
    let catalog: Value = serde_json::from_slice(
        &std::fs::read(dir.join(".esb/config/gateway.json")).expect("catalog"),
    )
    .expect("catalog json");
    assert_eq!(catalog["routes"][0]["path"], "/hello/{name}");
    assert_eq!(catalog["routes"][0]["auth"], "none");
    for image in docker_lines(&[
        "images",
        "-q",
        &format!(
            "esb-fn-{}-hellofunction",
            dir.file_name().and_then(|n| n.to_str()).expect("name")
        ),
    ]) {
        let _ = Command::new("docker").args(["rmi", "-f", &image]).output();
    }
    let _ = std::fs::remove_dir_all(&dir);
}
