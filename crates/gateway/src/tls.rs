//! TLS material: the HTTPS server configuration for clients, and the gRPC
//! server configuration that requires agents' client certificates (mTLS).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::ServerConfig;

use esb_contracts::pki::{self, files};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("{path} holds no PEM private key")]
    NoKey { path: PathBuf },
    #[error("the certificate and key are not usable: {0}")]
    Config(#[source] tokio_rustls::rustls::Error),
    #[error("certificate directory {dir} is incomplete: {missing} missing (it has {present}); restore them, or empty the directory to have new ones generated")]
    Incomplete {
        dir: PathBuf,
        missing: String,
        present: String,
    },
    #[error("cannot generate the box's TLS material: {0}")]
    Generate(#[source] esb_contracts::pki::PkiError),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The files of the certificate directory the gateway reads.
const DIR_FILES: [&str; 3] = [files::GATEWAY_CERT, files::GATEWAY_KEY, files::CA_CERT];

/// PEM files of the gateway's identity and of the CA that signs agents.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    /// The CA agents' client certificates must chain to.
    pub client_ca_pem: Option<Vec<u8>>,
}

impl TlsFiles {
    /// The box's certificate directory: `gateway.pem` and `gateway.key` are
    /// the server identity, `ca.pem` the agents' CA. When the directory
    /// holds none of the box's files, a new box PKI is generated and written
    /// there first (private keys 0600); when only some exist, that is an
    /// error naming the missing ones.
    pub fn from_dir(dir: &Path) -> Result<TlsFiles, TlsError> {
        let exists = |name: &str| dir.join(name).exists();
        let (present, missing): (Vec<&str>, Vec<&str>) =
            DIR_FILES.iter().copied().partition(|name| exists(name));
        if present.is_empty() {
            let others: Vec<&str> = files::ALL.into_iter().filter(|name| exists(name)).collect();
            if others.is_empty() {
                generate(dir)?;
            } else {
                return Err(TlsError::Incomplete {
                    dir: dir.to_owned(),
                    missing: missing.join(", "),
                    present: others.join(", "),
                });
            }
        } else if !missing.is_empty() {
            return Err(TlsError::Incomplete {
                dir: dir.to_owned(),
                missing: missing.join(", "),
                present: present.join(", "),
            });
        }
        TlsFiles::read(
            &dir.join(files::GATEWAY_CERT),
            &dir.join(files::GATEWAY_KEY),
            Some(&dir.join(files::CA_CERT)),
        )
    }

    pub fn read(cert: &Path, key: &Path, client_ca: Option<&Path>) -> Result<TlsFiles, TlsError> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| TlsError::Read {
                path: path.to_owned(),
                source,
            })
        };
        let files = TlsFiles {
            cert_pem: read(cert)?,
            key_pem: read(key)?,
            client_ca_pem: client_ca.map(read).transpose()?,
        };
        // Parse now so bad material fails at startup, naming the file.
        let certs = CertificateDer::pem_slice_iter(&files.cert_pem)
            .filter_map(Result::ok)
            .count();
        if certs == 0 {
            return Err(TlsError::NoCertificate {
                path: cert.to_owned(),
            });
        }
        if PrivateKeyDer::from_pem_slice(&files.key_pem).is_err() {
            return Err(TlsError::NoKey {
                path: key.to_owned(),
            });
        }
        if let (Some(pem), Some(path)) = (&files.client_ca_pem, client_ca) {
            if CertificateDer::pem_slice_iter(pem)
                .filter_map(Result::ok)
                .count()
                == 0
            {
                return Err(TlsError::NoCertificate {
                    path: path.to_owned(),
                });
            }
        }
        Ok(files)
    }

    /// The rustls configuration of the client-facing HTTPS port.
    pub fn https_config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&self.cert_pem)
            .filter_map(Result::ok)
            .collect();
        let key = PrivateKeyDer::from_pem_slice(&self.key_pem)
            .map_err(|_| TlsError::Config(tokio_rustls::rustls::Error::NoCertificatesPresented))?;
        let mut config = ServerConfig::builder_with_provider(Arc::new(
            tokio_rustls::rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(TlsError::Config)?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// The tonic configuration of the agents' gRPC port: the gateway's
    /// identity, and client certificates required when a CA is given.
    pub fn grpc_config(&self) -> tonic::transport::ServerTlsConfig {
        let identity = tonic::transport::Identity::from_pem(&self.cert_pem, &self.key_pem);
        let config = tonic::transport::ServerTlsConfig::new().identity(identity);
        match &self.client_ca_pem {
            Some(ca) => config.client_ca_root(tonic::transport::Certificate::from_pem(ca)),
            None => config,
        }
    }
}

/// Writes a new box PKI into `dir` (see [`pki::write_box_material`]).
fn generate(dir: &Path) -> Result<(), TlsError> {
    pki::write_box_material(dir).map_err(|e| match e {
        pki::WriteError::Generate(e) => TlsError::Generate(e),
        pki::WriteError::Write { path, source } => TlsError::Write { path, source },
    })?;
    tracing::info!(dir = %dir.display(), "generated the box's TLS material");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("esb-tls-{name}-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("dir");
        dir
    }

    #[test]
    fn an_empty_directory_gets_the_box_material() {
        let dir = temp_dir("empty").join("certs");
        let files = TlsFiles::from_dir(&dir).expect("generated");
        assert!(files.client_ca_pem.is_some(), "the agents' CA is ca.pem");
        files.https_config().expect("a usable server identity");
        for name in files::ALL {
            let mode = std::fs::metadata(dir.join(name))
                .expect(name)
                .permissions()
                .mode()
                & 0o777;
            let expected = if name.ends_with(".key") { 0o600 } else { 0o644 };
            assert_eq!(mode, expected, "{name}");
        }
        // The second start reads what the first wrote.
        let again = TlsFiles::from_dir(&dir).expect("read back");
        assert_eq!(again.cert_pem, files.cert_pem);
        let _ = std::fs::remove_dir_all(dir.parent().expect("parent"));
    }

    #[test]
    fn a_partial_directory_is_an_error_naming_the_missing_files() {
        let dir = temp_dir("partial");
        TlsFiles::from_dir(&dir).expect("generated");
        std::fs::remove_file(dir.join(files::GATEWAY_KEY)).expect("remove");
        let err = TlsFiles::from_dir(&dir)
            .expect_err("incomplete")
            .to_string();
        assert!(err.contains("gateway.key missing"), "{err}");
        assert!(err.contains("gateway.pem"), "{err}");

        // Only other box files (an agent's): not generated over them.
        let other = temp_dir("other");
        std::fs::write(other.join(files::AGENT_CERT), "x").expect("write");
        let err = TlsFiles::from_dir(&other).expect_err("refused").to_string();
        assert!(
            err.contains("gateway.pem, gateway.key, ca.pem missing"),
            "{err}"
        );
        assert!(!other.join(files::GATEWAY_CERT).exists());
        let _ = std::fs::remove_dir_all(dir);
        let _ = std::fs::remove_dir_all(other);
    }
}
