//! A box: the app directory holding the SAM template, the project name that
//! namespaces its containers, networks and volumes, and the `.esb/` directory
//! where `esb` keeps what it generates.

use std::path::{Path, PathBuf};

use crate::error::{CliError, Result};

/// Name of the directory, next to the template, where `esb` writes.
pub const STATE_DIR: &str = ".esb";

#[derive(Debug, Clone)]
pub struct Project {
    /// The Compose project name.
    pub name: String,
    /// The directory of the template.
    pub app_dir: PathBuf,
    /// The template file.
    pub template: PathBuf,
    /// `<app_dir>/.esb`.
    pub state_dir: PathBuf,
}

impl Project {
    /// The project of `template` (relative to the working directory), named
    /// `name` or after the app directory.
    pub fn new(template: &Path, name: Option<&str>) -> Result<Project> {
        let cwd = std::env::current_dir()
            .map_err(|e| CliError::io("cannot read the working directory", e))?;
        let template = cwd.join(template);
        let app_dir = template
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| cwd.clone());
        let name = match name {
            Some(name) => {
                validate_name(name)?;
                name.to_owned()
            }
            None => derive_name(&app_dir),
        };
        Ok(Project {
            name,
            state_dir: app_dir.join(STATE_DIR),
            app_dir,
            template,
        })
    }

    pub fn config_dir(&self) -> PathBuf {
        self.state_dir.join("config")
    }

    pub fn certs_dir(&self) -> PathBuf {
        self.state_dir.join("certs")
    }

    pub fn build_dir(&self) -> PathBuf {
        self.state_dir.join("build")
    }

    pub fn catalog_path(&self) -> PathBuf {
        self.config_dir().join("gateway.json")
    }

    pub fn resources_path(&self) -> PathBuf {
        self.config_dir().join("resources.json")
    }

    pub fn credentials_path(&self) -> PathBuf {
        self.state_dir.join("credentials.json")
    }

    /// The runtime mode of the last `build` or `up` (docker, containerd).
    pub fn mode_path(&self) -> PathBuf {
        self.state_dir.join("mode")
    }

    /// The Compose environment file of this project (ports, secrets).
    pub fn env_path(&self) -> PathBuf {
        self.state_dir.join(format!("{}.env", self.name))
    }

    /// Prefix of the function images built for this app.
    pub fn image_prefix(&self) -> String {
        format!("esb-fn-{}", derive_name(&self.app_dir))
    }
}

/// Compose's rule: lower-case letters, digits, `-` and `_`, starting with a
/// letter or digit.
pub fn validate_name(name: &str) -> Result<()> {
    let valid = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && name.len() <= 63;
    if valid {
        Ok(())
    } else {
        Err(CliError::Usage(format!(
            "project name {name:?} is not valid: use lower-case letters, digits, '-' and '_', starting with a letter or digit"
        )))
    }
}

/// A valid project name from a directory's name: `My App` becomes `my-app`.
pub fn derive_name(dir: &Path) -> String {
    let base = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    let mut name = String::new();
    for c in base.chars() {
        let c = if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' {
            c
        } else {
            '-'
        };
        let leading = name.is_empty() && !c.is_ascii_alphanumeric();
        if !(leading || c == '-' && name.ends_with('-')) {
            name.push(c);
        }
    }
    let name = name.trim_end_matches('-');
    let name: String = name.chars().take(40).collect();
    if name.is_empty() {
        "esb".to_owned()
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_the_directory() {
        assert_eq!(derive_name(Path::new("/src/My App!")), "my-app");
        assert_eq!(derive_name(Path::new("/src/__x")), "x");
        assert_eq!(derive_name(Path::new("/src/--")), "esb");
        assert_eq!(derive_name(Path::new("/")), "esb");
        assert_eq!(derive_name(Path::new("/a/sam_app-2")), "sam_app-2");
    }

    #[test]
    fn explicit_names_are_checked() {
        assert!(validate_name("box-1").is_ok());
        for bad in ["", "Box", "-x", "a b", "a.b"] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }
}
