//! The box's secrets and TLS material, generated on first use and kept:
//! `.esb/credentials.json` (mode 0600) and `.esb/certs/` (rcgen, keys 0600).

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{CliError, Result};
use crate::project::Project;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Credentials {
    pub user: String,
    pub password: String,
    pub api_key: String,
    pub jwt_secret: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    /// The PostgreSQL superuser `esb`'s password.
    pub database_password: String,
    /// Passwords of the template's database users, by logical id, for
    /// templates that do not set one.
    #[serde(default)]
    pub databases: BTreeMap<String, String>,
}

const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

/// `len` characters drawn uniformly from `alphabet` by the OS's CSPRNG.
pub fn random_string(alphabet: &[u8], len: usize) -> Result<String> {
    // Rejection sampling keeps the distribution uniform.
    let limit = 256 - (256 % alphabet.len());
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    while out.len() < len {
        getrandom::fill(&mut buf)
            .map_err(|e| CliError::Failed(format!("no randomness from the OS: {e}")))?;
        for &b in &buf {
            if (b as usize) < limit && out.len() < len {
                out.push(alphabet[b as usize % alphabet.len()] as char);
            }
        }
    }
    Ok(out)
}

impl Credentials {
    pub fn generate() -> Result<Credentials> {
        Ok(Credentials {
            user: "admin".into(),
            password: random_string(ALNUM, 24)?,
            api_key: random_string(ALNUM, 40)?,
            jwt_secret: random_string(ALNUM, 64)?,
            access_key_id: format!("AKIA{}", random_string(UPPER, 16)?),
            secret_access_key: random_string(ALNUM, 40)?,
            database_password: random_string(ALNUM, 24)?,
            databases: BTreeMap::new(),
        })
    }

    /// The project's credentials, generated and saved on first use.
    pub fn load_or_create(project: &Project) -> Result<Credentials> {
        let path = project.credentials_path();
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                CliError::Usage(format!(
                    "{} is not valid: {e} (delete it to generate new credentials)",
                    path.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let credentials = Credentials::generate()?;
                credentials.save(project)?;
                Ok(credentials)
            }
            Err(e) => Err(CliError::read(&path, e)),
        }
    }

    pub fn load(project: &Project) -> Result<Credentials> {
        let path = project.credentials_path();
        let bytes = std::fs::read(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                CliError::NotRunning {
                    project: project.name.clone(),
                }
            } else {
                CliError::read(&path, e)
            }
        })?;
        serde_json::from_slice(&bytes)
            .map_err(|e| CliError::Usage(format!("{} is not valid: {e}", path.display())))
    }

    pub fn save(&self, project: &Project) -> Result<()> {
        let text = serde_json::to_vec_pretty(self)
            .map_err(|e| CliError::Failed(format!("cannot encode credentials: {e}")))?;
        write_private(&project.credentials_path(), &text)
    }

    /// The password of a template database user, generated once.
    pub fn database_user_password(&mut self, logical_id: &str) -> Result<String> {
        if let Some(p) = self.databases.get(logical_id) {
            return Ok(p.clone());
        }
        let password = random_string(ALNUM, 24)?;
        self.databases
            .insert(logical_id.to_owned(), password.clone());
        Ok(password)
    }
}

/// Write `bytes` to `path` atomically with mode 0600, creating the directory.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic(path, bytes, 0o600)
}

/// Write `bytes` to `path` through a temporary file and a rename, so readers
/// (the gateway polling its catalog) never see half a file.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| CliError::write(dir, e))?;
    }
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| CliError::write(&tmp, e))?;
    file.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(|e| CliError::write(&tmp, e))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| CliError::write(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| CliError::write(path, e))
}

/// The box's TLS material in `.esb/certs/`, generated when absent. Returns
/// whether it was generated now.
pub fn ensure_certs(project: &Project) -> Result<bool> {
    use esb_contracts::pki::{self, files};
    let dir = project.certs_dir();
    let present: Vec<&str> = files::ALL
        .into_iter()
        .filter(|f| dir.join(f).exists())
        .collect();
    if present.len() == files::ALL.len() {
        return Ok(false);
    }
    if !present.is_empty() {
        return Err(CliError::Usage(format!(
            "{} has only some of the box's TLS files ({}); delete the directory to generate new ones",
            dir.display(),
            present.join(", ")
        )));
    }
    pki::write_box_material(&dir).map_err(|e| CliError::Failed(e.to_string()))?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| CliError::write(&dir, e))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_strings_use_the_alphabet() {
        let s = random_string(UPPER, 100).expect("random");
        assert_eq!(s.len(), 100);
        assert!(s.bytes().all(|b| UPPER.contains(&b)));
        assert_ne!(s, random_string(UPPER, 100).expect("random"));
    }

    #[test]
    fn credentials_are_kept_private() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::write(dir.path().join("template.yaml"), "").expect("write");
        let project = Project::new(&dir.path().join("template.yaml"), Some("t")).expect("project");
        let first = Credentials::load_or_create(&project).expect("create");
        let again = Credentials::load_or_create(&project).expect("load");
        assert_eq!(first, again);
        let mode = std::fs::metadata(project.credentials_path())
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(first.access_key_id.starts_with("AKIA") && first.access_key_id.len() == 20);
        assert!(ensure_certs(&project).expect("certs"));
        assert!(!ensure_certs(&project).expect("certs again"));
    }
}
