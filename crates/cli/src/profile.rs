//! Bacalhau's client profiles: named endpoints with their credentials, kept as
//! `$BACALHAU_DIR/profiles/<name>.yaml` (readable only by their owner), the current one named
//! by the `profiles/current` symlink. Chosen by `--profile`, then `BACALHAU_PROFILE`, then
//! `current`; credentials in the environment still win over a profile's token.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// One profile, in Bacalhau's field names.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Profile {
    /// `http(s)://host:port` of the API.
    pub endpoint: String,
    /// What it is for.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Request timeout, as a Go duration (`30s`); informational here.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub timeout: String,
    /// Credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<ProfileAuth>,
    /// TLS settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ProfileTls>,
}

/// A profile's credentials.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProfileAuth {
    /// Sent as `Authorization: Bearer <token>` (an API key, or an SSO token).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub token: String,
}

/// A profile's TLS settings.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProfileTls {
    /// Do not check the server's certificate.
    #[serde(default)]
    pub insecure: bool,
}

fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join("profiles")
}

fn check_name(name: &str) -> Result<()> {
    if name.is_empty()
        || name == "current"
        || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        || name.starts_with('.')
    {
        bail!("{name:?} cannot be a profile name: use letters, digits, '-', '_' and '.'");
    }
    Ok(())
}

fn path(data_dir: &Path, name: &str) -> Result<PathBuf> {
    check_name(name)?;
    Ok(dir(data_dir).join(format!("{name}.yaml")))
}

/// Reads the profile `name`.
pub fn load(data_dir: &Path, name: &str) -> Result<Profile> {
    let p = path(data_dir, name)?;
    let text = std::fs::read_to_string(&p).with_context(|| {
        format!("there is no profile {name} ({}); list them with `bacalhau profile list`", p.display())
    })?;
    yaml_serde::from_str(&text).with_context(|| format!("{} is not a valid profile", p.display()))
}

/// The name of the current profile, if one is selected.
pub fn current(data_dir: &Path) -> Option<String> {
    let target = std::fs::read_link(dir(data_dir).join("current")).ok()?;
    target.file_name()?.to_str()?.strip_suffix(".yaml").map(str::to_owned)
}

/// The profile chosen by `flag` (`--profile`/`BACALHAU_PROFILE`), else the current one.
pub fn selected(data_dir: &Path, flag: Option<&str>) -> Result<Option<(String, Profile)>> {
    let name = match flag.map(str::trim).filter(|f| !f.is_empty()) {
        Some(n) => n.to_owned(),
        None => match current(data_dir) {
            Some(n) => n,
            None => return Ok(None),
        },
    };
    Ok(Some((name.clone(), load(data_dir, &name)?)))
}

/// Writes the profile `name` (mode 0600: it may hold a token).
pub fn save(data_dir: &Path, name: &str, profile: &Profile, select: bool) -> Result<()> {
    if profile.endpoint.trim().is_empty() {
        bail!("a profile needs --endpoint, e.g. --endpoint https://bacalhau.example.com:1234");
    }
    let p = path(data_dir, name)?;
    std::fs::create_dir_all(dir(data_dir))?;
    let tmp = p.with_extension("yaml.tmp");
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
        f.write_all(yaml_serde::to_string(profile)?.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &p)?;
    if select {
        self::select(data_dir, name)?;
    }
    Ok(())
}

/// Makes `name` the current profile.
pub fn select(data_dir: &Path, name: &str) -> Result<()> {
    load(data_dir, name)?;
    let link = dir(data_dir).join("current");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(format!("{name}.yaml"), &link).context("cannot select the profile")?;
    Ok(())
}

/// Removes the profile `name` (and the selection, if it was current).
pub fn delete(data_dir: &Path, name: &str) -> Result<()> {
    let p = path(data_dir, name)?;
    std::fs::remove_file(&p).with_context(|| format!("there is no profile {name}"))?;
    if current(data_dir).as_deref() == Some(name) {
        let _ = std::fs::remove_file(dir(data_dir).join("current"));
    }
    Ok(())
}

/// Every profile's name, sorted.
pub fn names(data_dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir(data_dir))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_suffix(".yaml")).map(str::to_owned))
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_are_saved_private_selected_and_deleted() {
        let tmp = tempfile::tempdir().expect("tmp");
        let p = Profile {
            endpoint: "http://127.0.0.1:1234".into(),
            auth: Some(ProfileAuth { token: "secret-token-0123456789".into() }),
            ..Default::default()
        };
        save(tmp.path(), "prod", &p, true).expect("save");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(tmp.path().join("profiles/prod.yaml")).expect("meta").permissions().mode();
        assert_eq!(mode & 0o077, 0, "a profile with a token is private: {mode:o}");
        assert_eq!(selected(tmp.path(), None).expect("sel").map(|s| s.1), Some(p));
        assert!(save(tmp.path(), "../evil", &Profile { endpoint: "x".into(), ..Default::default() }, false).is_err());
        delete(tmp.path(), "prod").expect("delete");
        assert!(selected(tmp.path(), None).expect("sel").is_none());
    }
}
