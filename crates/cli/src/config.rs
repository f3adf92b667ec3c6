//! Bacalhau's `config.yaml`, as far as this version reads it: `API.Auth.Users` (the API's
//! users and their capabilities). Keys match without regard to case, as Bacalhau's loader
//! does; a key this version does not know is an error that names it, never silently ignored.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use bacalhau_api::auth::UserConfig;
use serde_json::Value;

/// What the config files say.
#[derive(Debug, Default)]
pub struct NodeConfig {
    /// `API.Auth.Users`.
    pub users: Vec<UserConfig>,
}

/// The keys read, in Bacalhau's spelling.
const KNOWN: &[&str] = &["API", "API.Auth", "API.Auth.Users"];

/// Reads `files` in order (a later file's `API.Auth.Users` replaces an earlier one's).
pub fn load(files: &[PathBuf]) -> Result<NodeConfig> {
    let mut cfg = NodeConfig::default();
    for file in files {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("cannot read the config file {}", file.display()))?;
        let value: Value = yaml_serde::from_str(&text)
            .with_context(|| format!("{} is not valid YAML (Bacalhau's config.yaml format)", file.display()))?;
        if value.is_null() {
            continue;
        }
        check_keys(&value, "").with_context(|| format!("in {}", file.display()))?;
        if let Some(users) = get(&value, &["api", "auth", "users"]) {
            cfg.users = users
                .as_array()
                .context("API.Auth.Users must be a list")?
                .iter()
                .enumerate()
                .map(|(i, u)| user(u).with_context(|| format!("{}: API.Auth.Users[{i}]", file.display())))
                .collect::<Result<_>>()?;
        }
    }
    Ok(cfg)
}

fn get<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.as_object()?.iter().find(|(key, _)| key.eq_ignore_ascii_case(k)).map(|(_, v)| v))
}

fn check_keys(v: &Value, prefix: &str) -> Result<()> {
    let Some(map) = v.as_object() else { return Ok(()) };
    for (k, child) in map {
        let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
        let Some(known) = KNOWN.iter().find(|p| p.eq_ignore_ascii_case(&path)) else {
            let near = KNOWN.iter().rfind(|p| p.to_ascii_lowercase().starts_with(&prefix.to_ascii_lowercase()));
            bail!(
                "the config key {path} is not one this version reads{}",
                near.map(|n| format!(" (it reads {}; did you mean {n}?)", KNOWN.join(", "))).unwrap_or_default()
            );
        };
        if *known != "API.Auth.Users" {
            check_keys(child, known)?;
        }
    }
    Ok(())
}

/// One user entry, keys in any case.
fn user(v: &Value) -> Result<UserConfig> {
    let map = v.as_object().context("a user must be a map with Username/Password or APIKey and Capabilities")?;
    let mut u = UserConfig::default();
    for (k, val) in map {
        let s = || val.as_str().map(str::to_owned).with_context(|| format!("{k} must be a string"));
        match k.to_ascii_lowercase().as_str() {
            "alias" => u.alias = s()?,
            "username" => u.username = s()?,
            "password" => u.password = s()?,
            "apikey" => u.api_key = s()?,
            "capabilities" => {
                u.capabilities = serde_json::from_value(lower_to_actions(val))
                    .context("Capabilities must be a list of {Actions: [...]}")?
            }
            other => bail!("{other} is not a user key; use Alias, Username, Password, APIKey, Capabilities"),
        }
    }
    Ok(u)
}

fn lower_to_actions(v: &Value) -> Value {
    match v {
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|c| match c.as_object() {
                    Some(m) => Value::Object(
                        m.iter()
                            .map(|(k, v)| {
                                (
                                    if k.eq_ignore_ascii_case("actions") { "Actions".into() } else { k.clone() },
                                    v.clone(),
                                )
                            })
                            .collect(),
                    ),
                    None => c.clone(),
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_users_in_any_case_and_names_unknown_keys() {
        let tmp = tempfile::tempdir().expect("tmp");
        let f = tmp.path().join("config.yaml");
        std::fs::write(
            &f,
            "api:\n  auth:\n    users:\n      - alias: ro\n        apikey: P7D4CBB284634DD081FAC33868436ECCL\n        capabilities:\n          - actions: [\"read:job\"]\n",
        )
        .expect("write");
        let cfg = load(std::slice::from_ref(&f)).expect("config");
        assert_eq!(cfg.users[0].alias, "ro");
        assert_eq!(cfg.users[0].capabilities[0].actions, vec!["read:job"]);
        std::fs::write(&f, "API:\n  Auth:\n    Userz: []\n").expect("write");
        let e = format!("{:#}", load(&[f]).expect_err("unknown"));
        assert!(e.contains("API.Auth.Userz is not one this version reads") && e.contains("API.Auth.Users"), "{e}");
    }
}
