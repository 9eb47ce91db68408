//! `AWS::RDS::DBCluster` / `AWS::RDS::DBInstance` running PostgreSQL.
//!
//! An instance whose `DBClusterIdentifier` names a cluster of the template
//! is part of that cluster; the cluster is the one database.

use super::error::{Located, Pos, Result};
use super::intrinsic::{Context, Resource, ResourceKind};
use super::model::Database;
use super::value;

const ENGINES: &[&str] = &["aurora-postgresql", "postgres"];
const DEFAULT_USER: &str = "app";
const DYNAMIC_REFERENCE: &str = "{{resolve:";

struct Entry {
    database: Database,
    /// A cluster's own `DBClusterIdentifier`, which instances may use instead of `!Ref`.
    cluster_identifier: Option<String>,
    /// For an instance: the cluster it belongs to, and where that is said.
    member_of: Option<(String, Pos)>,
    cluster: bool,
}

#[derive(Default)]
pub(crate) struct Databases {
    entries: Vec<Entry>,
}

impl Databases {
    pub fn add(
        &mut self,
        ctx: &Context<'_>,
        resource: &Resource<'_>,
        warnings: &mut Vec<Located>,
    ) -> Result<()> {
        let id = resource.id();
        let cluster = resource.kind == ResourceKind::DbCluster;
        let text = |key: &str| -> Result<Option<(String, Pos)>> {
            match resource.property(key) {
                None => Ok(None),
                Some(node) => match ctx.resolve(node)? {
                    None => Ok(None),
                    Some(v) => Ok(Some((value::text(&v, &format!("{key} of {id}"))?, v.pos))),
                },
            }
        };
        let member_of = if cluster {
            None
        } else {
            text("DBClusterIdentifier")?
        };
        match text("Engine")? {
            Some((engine, pos)) => {
                if !ENGINES.contains(&engine.as_str()) {
                    return Err(Located::new(
                        pos,
                        format!(
                            "database engine {engine} of {id} is not supported by ESB (supported: {})",
                            ENGINES.join(", ")
                        ),
                    ));
                }
            }
            None if member_of.is_some() => {}
            None => {
                return Err(Located::new(
                    resource.properties_pos(),
                    format!("{} {id} has no Engine", resource.type_name),
                ))
            }
        }
        if member_of.is_some() {
            self.entries.push(Entry {
                database: Database {
                    logical_id: id.to_owned(),
                    db_name: String::new(),
                    user: String::new(),
                    password: None,
                },
                cluster_identifier: None,
                member_of,
                cluster: false,
            });
            return Ok(());
        }

        let name_key = if cluster { "DatabaseName" } else { "DBName" };
        let db_name = match text(name_key)? {
            Some((name, pos)) => {
                check_identifier(&name)
                    .map_err(|m| Located::new(pos, format!("{name_key} {name:?} of {id} {m}")))?;
                name
            }
            None => default_db_name(id),
        };
        let user = match text("MasterUsername")? {
            Some((user, pos)) if user.contains(DYNAMIC_REFERENCE) => {
                warnings.push(Located::new(
                    pos,
                    format!(
                        "MasterUsername of {id} is a dynamic reference; ESB uses {DEFAULT_USER:?}"
                    ),
                ));
                DEFAULT_USER.to_owned()
            }
            Some((user, pos)) => {
                check_identifier(&user).map_err(|m| {
                    Located::new(pos, format!("MasterUsername {user:?} of {id} {m}"))
                })?;
                user
            }
            None => DEFAULT_USER.to_owned(),
        };
        let managed = match resource.property("ManageMasterUserPassword") {
            Some(node) => match ctx.resolve(node)? {
                Some(v) => value::boolean(&v, &format!("ManageMasterUserPassword of {id}"))?,
                None => false,
            },
            None => false,
        };
        let password = match text("MasterUserPassword")? {
            _ if managed => None,
            Some((p, _)) if p.contains(DYNAMIC_REFERENCE) => None,
            Some((p, _)) => Some(p),
            None => None,
        };
        let cluster_identifier = if cluster {
            text("DBClusterIdentifier")?.map(|(i, _)| i)
        } else {
            None
        };
        self.entries.push(Entry {
            database: Database {
                logical_id: id.to_owned(),
                db_name,
                user,
                password,
            },
            cluster_identifier,
            member_of: None,
            cluster,
        });
        Ok(())
    }

    /// The databases, with cluster members checked and folded into their cluster.
    pub fn finish(self) -> Result<Vec<Database>> {
        for entry in &self.entries {
            let Some((target, pos)) = &entry.member_of else {
                continue;
            };
            let found = self.entries.iter().any(|e| {
                e.cluster
                    && (e.database.logical_id == *target
                        || e.cluster_identifier
                            .as_ref()
                            .is_some_and(|i| i.eq_ignore_ascii_case(target)))
            });
            if !found {
                return Err(Located::new(
                    *pos,
                    format!(
                        "DBClusterIdentifier {target:?} of {} does not name an AWS::RDS::DBCluster of this template",
                        entry.database.logical_id
                    ),
                ));
            }
        }
        Ok(self
            .entries
            .into_iter()
            .filter(|e| e.member_of.is_none())
            .map(|e| e.database)
            .collect())
    }
}

/// PostgreSQL identifier rules (unquoted, at most 63 bytes).
fn check_identifier(name: &str) -> std::result::Result<(), &'static str> {
    if name.is_empty() || name.len() > 63 {
        return Err("must be 1 to 63 characters long");
    }
    if !name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
        return Err("must start with a letter or _");
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err("may only contain letters, digits and _");
    }
    Ok(())
}

fn default_db_name(id: &str) -> String {
    let lower = id.to_ascii_lowercase();
    let name = if lower.starts_with(|c: char| c.is_ascii_digit()) {
        format!("db_{lower}")
    } else {
        lower
    };
    name.chars().take(63).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers() {
        assert!(check_identifier("orders_db").is_ok());
        assert!(check_identifier("1db").is_err());
        assert!(check_identifier("my-db").is_err());
        assert_eq!(default_db_name("OrdersDB"), "ordersdb");
        assert_eq!(default_db_name("1Db"), "db_1db");
    }
}
