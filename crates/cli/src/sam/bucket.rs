//! `AWS::S3::Bucket`: its name and lifecycle expiration rules.

use super::error::{Located, Result};
use super::intrinsic::{Context, Resource};
use super::model::{Bucket, LifecycleRule};
use super::value::{self, describe};
use super::yaml::Node;

/// Properties ESB reads or that change nothing in the box.
const KNOWN: &[&str] = &[
    "AccessControl",
    "BucketEncryption",
    "BucketName",
    "LifecycleConfiguration",
    "OwnershipControls",
    "PublicAccessBlockConfiguration",
    "Tags",
];

pub(crate) fn build(
    ctx: &Context<'_>,
    resource: &Resource<'_>,
    warnings: &mut Vec<Located>,
) -> Result<Bucket> {
    let id = resource.id();
    let name = ctx.physical_name(id, resource.key.pos)?;
    if let Err(m) = check_bucket_name(&name) {
        let pos = resource
            .property("BucketName")
            .map_or(resource.key.pos, |n| n.pos);
        return Err(Located::new(
            pos,
            format!("BucketName {name:?} of {id} {m}"),
        ));
    }
    let mut lifecycle = Vec::new();
    if let Some(props) = resource.properties {
        for (key, _) in props.as_map().unwrap_or_default() {
            if !KNOWN.contains(&key.name.as_str()) {
                warnings.push(Located::new(
                    key.pos,
                    format!(
                        "property {} of bucket {id} is not supported by ESB; ignored",
                        key.name
                    ),
                ));
            }
        }
        if let Some(config) = ctx.property(props, "LifecycleConfiguration")? {
            let what = format!("LifecycleConfiguration of bucket {id}");
            value::mapping(&config, &what)?;
            if let Some(rules) = config.get("Rules") {
                let items = rules.as_seq().ok_or_else(|| {
                    Located::new(
                        rules.pos,
                        format!("{what}.Rules must be a list, found {}", describe(rules)),
                    )
                })?;
                for rule in items {
                    if let Some(rule) = lifecycle_rule(id, rule, warnings)? {
                        lifecycle.push(rule);
                    }
                }
            }
        }
    }
    Ok(Bucket {
        logical_id: id.to_owned(),
        name,
        lifecycle,
    })
}

fn lifecycle_rule(
    bucket: &str,
    rule: &Node,
    warnings: &mut Vec<Located>,
) -> Result<Option<LifecycleRule>> {
    let what = format!("lifecycle rule of bucket {bucket}");
    value::mapping(rule, &what)?;
    let id = match rule.get("Id") {
        Some(n) => Some(value::text(n, &format!("Id of {what}"))?),
        None => None,
    };
    let label = id.as_ref().map_or_else(
        || what.clone(),
        |i| format!("lifecycle rule {i} of bucket {bucket}"),
    );
    let status = rule
        .get("Status")
        .ok_or_else(|| Located::new(rule.pos, format!("{label} has no Status")))?;
    let enabled = match value::text(status, &format!("Status of {label}"))?.as_str() {
        "Enabled" => true,
        "Disabled" => false,
        other => {
            return Err(Located::new(
                status.pos,
                format!("Status of {label} must be Enabled or Disabled, found {other:?}"),
            ))
        }
    };
    let prefix = match (rule.get("Prefix"), rule.get("Filter")) {
        (Some(p), _) => Some(value::text(p, &format!("Prefix of {label}"))?),
        (None, Some(filter)) => {
            if filter.get("And").is_some() || filter.get("Tag").is_some() {
                warnings.push(Located::new(
                    filter.pos,
                    format!("tag filters of {label} are not supported by ESB; the rule applies by prefix only"),
                ));
            }
            let prefix = filter
                .get("Prefix")
                .or_else(|| filter.get("And").and_then(|a| a.get("Prefix")));
            match prefix {
                Some(p) => Some(value::text(p, &format!("Filter.Prefix of {label}"))?),
                None => None,
            }
        }
        (None, None) => None,
    };
    let Some(days) = rule.get("ExpirationInDays") else {
        warnings.push(Located::new(
            rule.pos,
            format!("{label} has no ExpirationInDays; ESB only applies expiration rules, so it is skipped"),
        ));
        return Ok(None);
    };
    let expiration_days =
        value::integer(days, &format!("ExpirationInDays of {label}"), 1..=u32::MAX)?;
    Ok(Some(LifecycleRule {
        id,
        prefix: prefix.filter(|p| !p.is_empty()),
        expiration_days,
        enabled,
    }))
}

/// S3's naming rules for new buckets.
fn check_bucket_name(name: &str) -> std::result::Result<(), &'static str> {
    if !(3..=63).contains(&name.len()) {
        return Err("must be 3 to 63 characters long");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
    {
        return Err("may only contain lower-case letters, digits, - and .");
    }
    let edge_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !edge_ok(name.chars().next()) || !edge_ok(name.chars().last()) {
        return Err("must begin and end with a letter or digit");
    }
    if name.contains("..") {
        return Err("must not contain two adjacent periods");
    }
    if name.split('.').count() == 4 && name.split('.').all(|p| p.parse::<u8>().is_ok()) {
        return Err("must not look like an IP address");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_names() {
        assert!(check_bucket_name("my-app.uploads-1").is_ok());
        assert!(check_bucket_name("ab").is_err());
        assert!(check_bucket_name("My-Bucket").is_err());
        assert!(check_bucket_name("-bucket").is_err());
        assert!(check_bucket_name("a..b").is_err());
        assert!(check_bucket_name("192.168.1.1").is_err());
    }
}
