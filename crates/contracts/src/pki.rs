//! The box's PKI, generated in-process with rcgen: a CA, the gateway's
//! server certificate (HTTPS and gRPC), and client certificates for mTLS
//! (agents, and the gateway when it is a client). Pure: callers write the
//! PEM strings where they belong (see [`files`]).

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// File names of the box's TLS material inside its certificate directory;
/// `esb` writes them, the gateway and agents read them.
pub mod files {
    pub const CA_CERT: &str = "ca.pem";
    pub const CA_KEY: &str = "ca.key";
    pub const GATEWAY_CERT: &str = "gateway.pem";
    pub const GATEWAY_KEY: &str = "gateway.key";
    pub const AGENT_CERT: &str = "agent.pem";
    pub const AGENT_KEY: &str = "agent.key";
    pub const CLIENT_CERT: &str = "client.pem";
    pub const CLIENT_KEY: &str = "client.key";
    pub const REGISTRY_CERT: &str = "registry.pem";
    pub const REGISTRY_KEY: &str = "registry.key";

    /// Every file of a box's certificate directory.
    pub const ALL: [&str; 10] = [
        CA_CERT,
        CA_KEY,
        GATEWAY_CERT,
        GATEWAY_KEY,
        AGENT_CERT,
        AGENT_KEY,
        CLIENT_CERT,
        CLIENT_KEY,
        REGISTRY_CERT,
        REGISTRY_KEY,
    ];
}

/// Names the gateway's server certificate always carries: loopback for
/// clients on the host, `gateway` for the box network.
pub const GATEWAY_NAMES: [&str; 4] = ["localhost", "127.0.0.1", "::1", "gateway"];

/// Names the registry's server certificate carries (containerd and
/// firecracker modes): `registry` for nodes on the box network, loopback for
/// `esb build` pushing through the published port.
pub const REGISTRY_NAMES: [&str; 4] = ["registry", "localhost", "127.0.0.1", "::1"];

pub type PkiError = rcgen::Error;

/// A PEM certificate and its private key.
#[derive(Clone)]
pub struct Identity {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A CA that issues server and client certificates.
pub struct Pki {
    issuer: CertifiedIssuer<'static, KeyPair>,
    key_pem: String,
}

impl Pki {
    /// A new CA named `common_name`.
    pub fn new(common_name: &str) -> Result<Pki, PkiError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate()?;
        let key_pem = key.serialize_pem();
        Ok(Pki {
            issuer: CertifiedIssuer::self_signed(params, key)?,
            key_pem,
        })
    }

    pub fn ca_pem(&self) -> String {
        self.issuer.pem()
    }

    pub fn ca_key_pem(&self) -> &str {
        &self.key_pem
    }

    fn issue(
        &self,
        names: &[&str],
        purpose: ExtendedKeyUsagePurpose,
    ) -> Result<Identity, PkiError> {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(names.clone())?;
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().cloned().unwrap_or_default(),
        );
        params.extended_key_usages = vec![purpose];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Identity {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// A server certificate for `names` (DNS names or IP addresses).
    pub fn server(&self, names: &[&str]) -> Result<Identity, PkiError> {
        self.issue(names, ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A client certificate (agents, the gateway as a client).
    pub fn client(&self, name: &str) -> Result<Identity, PkiError> {
        self.issue(&[name], ExtendedKeyUsagePurpose::ClientAuth)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("cannot generate the box's TLS material: {0}")]
    Generate(#[source] PkiError),
    #[error("cannot write {path}: {source}")]
    Write {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Generate a box PKI and write it into `dir` (created if needed):
/// certificates 0644, private keys 0600, each file created new, so one that
/// appeared meanwhile is never overwritten.
pub fn write_box_material(dir: &std::path::Path) -> Result<(), WriteError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let write_error = |path: &std::path::Path| {
        let path = path.to_owned();
        move |source| WriteError::Write { path, source }
    };
    std::fs::create_dir_all(dir).map_err(write_error(dir))?;
    for (name, pem) in box_material(&[]).map_err(WriteError::Generate)? {
        let path = dir.join(name);
        let mode = if name.ends_with(".key") { 0o600 } else { 0o644 };
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&path)
            .map_err(write_error(&path))?;
        file.write_all(pem.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(write_error(&path))?;
    }
    Ok(())
}

/// Everything a box needs, as PEM, keyed by the names in [`files`].
pub fn box_material(extra_gateway_names: &[&str]) -> Result<Vec<(&'static str, String)>, PkiError> {
    let pki = Pki::new("ESB box CA")?;
    let mut names: Vec<&str> = GATEWAY_NAMES.to_vec();
    names.extend(extra_gateway_names.iter().copied());
    let gateway = pki.server(&names)?;
    let agent = pki.client("agent")?;
    let client = pki.client("gateway")?;
    let registry = pki.server(&REGISTRY_NAMES)?;
    Ok(vec![
        (files::CA_CERT, pki.ca_pem()),
        (files::CA_KEY, pki.ca_key_pem().to_owned()),
        (files::GATEWAY_CERT, gateway.cert_pem),
        (files::GATEWAY_KEY, gateway.key_pem),
        (files::AGENT_CERT, agent.cert_pem),
        (files::AGENT_KEY, agent.key_pem),
        (files::CLIENT_CERT, client.cert_pem),
        (files::CLIENT_KEY, client.key_pem),
        (files::REGISTRY_CERT, registry.cert_pem),
        (files::REGISTRY_KEY, registry.key_pem),
    ])
}
