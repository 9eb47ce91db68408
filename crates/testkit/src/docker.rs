//! Docker helpers for tests on the real engine: the CLI, image builds from
//! generated contexts, and cleanup that runs whatever happens.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs the docker CLI and returns its output; fails the test on error.
pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run docker {args:?}: {e}"));
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Removes what a test created, whatever happens.
#[derive(Default)]
pub struct Cleanup {
    pub containers: Vec<String>,
    pub images: Vec<String>,
    pub dirs: Vec<PathBuf>,
    /// `esb.stack` labels whose containers are removed too.
    pub stacks: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for stack in &self.stacks {
            let filter = format!("label=esb.stack={stack}");
            if let Ok(out) = Command::new("docker")
                .args(["ps", "-aq", "--filter", &filter])
                .output()
            {
                self.containers.extend(
                    String::from_utf8_lossy(&out.stdout)
                        .split_whitespace()
                        .map(str::to_owned),
                );
            }
        }
        for c in &self.containers {
            let _ = Command::new("docker").args(["rm", "-f", c]).output();
        }
        for i in &self.images {
            let _ = Command::new("docker").args(["rmi", "-f", i]).output();
        }
        for d in &self.dirs {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// Builds an image from a generated context (classic builder, no network)
/// and registers it for removal.
pub fn build_image(
    cleanup: &mut Cleanup,
    name: &str,
    dockerfile: &str,
    files: &[(&Path, &str)],
) -> String {
    let dir = std::env::temp_dir().join(format!("esb-image-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("context dir");
    cleanup.dirs.push(dir.clone());
    std::fs::write(dir.join("Dockerfile"), dockerfile).expect("Dockerfile");
    for (src, dest) in files {
        std::fs::copy(src, dir.join(dest))
            .unwrap_or_else(|e| panic!("copy {}: {e}", src.display()));
    }
    let tag = format!("esb-test-{name}:{}", std::process::id());
    cleanup.images.push(tag.clone());
    let out = Command::new("docker")
        .args(["build", "-q", "-t", &tag, dir.to_str().expect("utf-8")])
        .env("DOCKER_BUILDKIT", "0")
        .output()
        .expect("docker build");
    assert!(
        out.status.success(),
        "docker build {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    tag
}
