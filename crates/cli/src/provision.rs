//! What `esb up` creates inside a running box from the template's resources:
//! S3 buckets with their lifecycle rules (through the S3 API, signed with the
//! box's key) and PostgreSQL databases and users. Idempotent: running it
//! again changes only what differs.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::error::{CliError, Result};
use crate::secrets::Credentials;

/// The resources file `esb build` writes next to the gateway's catalog.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Resources {
    pub buckets: Vec<BucketSpec>,
    pub databases: Vec<DatabaseSpec>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BucketSpec {
    pub name: String,
    pub lifecycle: Vec<ExpirationRule>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ExpirationRule {
    pub id: Option<String>,
    pub prefix: Option<String>,
    pub expiration_days: u32,
    pub enabled: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DatabaseSpec {
    pub logical_id: String,
    pub name: String,
    pub user: String,
    pub password: String,
}

/// Create the buckets and set their lifecycle rules on the storage at
/// `endpoint` (http://127.0.0.1:PORT).
pub async fn buckets(
    endpoint: &str,
    region: &str,
    credentials: &Credentials,
    buckets: &[BucketSpec],
) -> Result<()> {
    let s3 = S3 {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| CliError::Failed(format!("cannot make an HTTP client: {e}")))?,
        endpoint: endpoint.trim_end_matches('/').to_owned(),
        region: region.to_owned(),
        credentials,
    };
    for bucket in buckets {
        let (status, body) = s3
            .send("PUT", &format!("/{}", bucket.name), Vec::new())
            .await?;
        // The box is single-tenant: an existing bucket is this box's own
        // (storage answers BucketAlreadyExists or ...OwnedByYou).
        let exists = status == 409
            && (body.contains("BucketAlreadyOwnedByYou") || body.contains("BucketAlreadyExists"));
        if !(200..300).contains(&status) && !exists {
            return Err(CliError::Failed(format!(
                "cannot create bucket {}: {status} {body}",
                bucket.name
            )));
        }
        let path = format!("/{}?lifecycle", bucket.name);
        let (status, body) = if bucket.lifecycle.is_empty() {
            s3.send("DELETE", &path, Vec::new()).await?
        } else {
            s3.send("PUT", &path, lifecycle_xml(&bucket.lifecycle).into_bytes())
                .await?
        };
        let no_rules = status == 404 && bucket.lifecycle.is_empty();
        if !(200..300).contains(&status) && !no_rules {
            return Err(CliError::Failed(format!(
                "cannot set the lifecycle rules of bucket {}: {status} {body}",
                bucket.name
            )));
        }
    }
    Ok(())
}

struct S3<'a> {
    http: reqwest::Client,
    endpoint: String,
    region: String,
    credentials: &'a Credentials,
}

impl S3<'_> {
    async fn send(&self, method: &str, path: &str, body: Vec<u8>) -> Result<(u16, String)> {
        use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
        use aws_sigv4::sign::v4;
        let url = format!("{}{path}", self.endpoint);
        let identity = aws_credential_types::Credentials::new(
            &self.credentials.access_key_id,
            &self.credentials.secret_access_key,
            None,
            None,
            "esb",
        )
        .into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("s3")
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| CliError::Failed(format!("cannot sign an S3 request: {e}")))?
            .into();
        let payload_hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&body));
        let headers = [("x-amz-content-sha256", payload_hash.as_str())];
        let signable = SignableRequest::new(
            method,
            &url,
            headers.iter().copied(),
            SignableBody::Bytes(&body),
        )
        .map_err(|e| CliError::Failed(format!("cannot sign an S3 request: {e}")))?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| CliError::Failed(format!("cannot sign an S3 request: {e}")))?
            .into_parts();
        let method = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|e| CliError::Failed(format!("bad method: {e}")))?;
        let mut request = self
            .http
            .request(method, &url)
            .header("x-amz-content-sha256", &payload_hash);
        for (name, value) in instructions.headers() {
            request = request.header(name, value);
        }
        let response = request.body(body).send().await.map_err(|e| {
            CliError::Failed(format!("cannot reach S3 storage at {}: {e}", self.endpoint))
        })?;
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        Ok((status, text))
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn lifecycle_xml(rules: &[ExpirationRule]) -> String {
    let mut xml = String::from(
        r#"<?xml version="1.0" encoding="UTF-8"?><LifecycleConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">"#,
    );
    for (i, rule) in rules.iter().enumerate() {
        let id = rule.id.clone().unwrap_or_else(|| format!("rule-{}", i + 1));
        xml.push_str(&format!(
            "<Rule><ID>{}</ID><Filter><Prefix>{}</Prefix></Filter><Status>{}</Status><Expiration><Days>{}</Days></Expiration></Rule>",
            xml_escape(&id),
            xml_escape(rule.prefix.as_deref().unwrap_or("")),
            if rule.enabled { "Enabled" } else { "Disabled" },
            rule.expiration_days
        ));
    }
    xml.push_str("</LifecycleConfiguration>");
    xml
}

/// Create the template's databases and their users in the box's PostgreSQL
/// at `url` (the superuser's URL on the published port).
pub async fn databases(url: &str, databases: &[DatabaseSpec]) -> Result<()> {
    use sqlx::{Connection, Executor, Row};
    if databases.is_empty() {
        return Ok(());
    }
    let mut conn = sqlx::PgConnection::connect(url)
        .await
        .map_err(|e| CliError::Failed(format!("cannot connect to the box's PostgreSQL: {e}")))?;
    let fail = |what: String| move |e: sqlx::Error| CliError::Failed(format!("{what}: {e}"));
    for db in databases {
        let user = quote_ident(&db.user);
        let password = quote_literal(&db.password);
        let exists = sqlx::query("SELECT 1 FROM pg_roles WHERE rolname = $1")
            .bind(&db.user)
            .fetch_optional(&mut conn)
            .await
            .map_err(fail(format!("database user {}", db.user)))?
            .is_some();
        let statement = if exists {
            format!("ALTER ROLE {user} WITH LOGIN PASSWORD {password}")
        } else {
            format!("CREATE ROLE {user} WITH LOGIN PASSWORD {password}")
        };
        conn.execute(statement.as_str())
            .await
            .map_err(fail(format!("database user {}", db.user)))?;
        let exists = sqlx::query("SELECT count(*) AS n FROM pg_database WHERE datname = $1")
            .bind(&db.name)
            .fetch_one(&mut conn)
            .await
            .map_err(fail(format!("database {}", db.name)))?
            .try_get::<i64, _>("n")
            .map_err(fail(format!("database {}", db.name)))?
            > 0;
        if !exists {
            conn.execute(
                format!("CREATE DATABASE {} OWNER {user}", quote_ident(&db.name)).as_str(),
            )
            .await
            .map_err(fail(format!("database {}", db.name)))?;
        }
    }
    Ok(())
}

fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle_rules_become_s3_xml() {
        let xml = lifecycle_xml(&[ExpirationRule {
            id: None,
            prefix: Some("tmp/<x>".into()),
            expiration_days: 7,
            enabled: true,
        }]);
        assert!(xml.contains("<Rule><ID>rule-1</ID><Filter><Prefix>tmp/&lt;x&gt;</Prefix></Filter><Status>Enabled</Status><Expiration><Days>7</Days></Expiration></Rule>"), "{xml}");
    }

    #[test]
    fn sql_names_and_literals_are_quoted() {
        assert_eq!(quote_ident(r#"a"b"#), r#""a""b""#);
        assert_eq!(quote_literal("it's"), "'it''s'");
    }
}
