//! The `esb-runtime` binary: where its own messages go.

use std::process::{Command, Output};

fn run_with_bad_address(stderr_to_stdout: bool) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_esb-runtime"));
    cmd.env("ESB_INVOKE_ADDR", "not-an-address")
        .env_remove("ESB_STDERR_TO_STDOUT");
    if stderr_to_stdout {
        cmd.env("ESB_STDERR_TO_STDOUT", "1");
    }
    cmd.output().expect("runs")
}

#[test]
fn a_configuration_error_goes_to_stderr_by_default() {
    let out = run_with_bad_address(false);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not-an-address"), "{stderr}");
    assert!(out.stdout.is_empty(), "{out:?}");
}

#[test]
fn asked_for_one_stream_it_writes_even_argument_errors_to_stdout() {
    let out = run_with_bad_address(true);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("not-an-address"), "{stdout}");
    assert!(out.stderr.is_empty(), "{out:?}");
}
