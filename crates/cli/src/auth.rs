//! The client's credentials (Bacalhau's `BACALHAU_API_KEY`, `BACALHAU_API_USERNAME`,
//! `BACALHAU_API_PASSWORD`) and the `auth` commands.

use anyhow::{Result, bail};
use base64::Engine as _;

/// The `Authorization` header value the environment asks for, if any.
pub fn authorization_from_env() -> Result<Option<String>> {
    let var = |k: &str| std::env::var(k).ok().map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
    let (key, user, password) = (var("BACALHAU_API_KEY"), var("BACALHAU_API_USERNAME"), var("BACALHAU_API_PASSWORD"));
    Ok(match (key, user, password) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => bail!(
            "authentication error: can't use both BACALHAU_API_KEY and BACALHAU_API_USERNAME/BACALHAU_API_PASSWORD simultaneously"
        ),
        (Some(k), None, None) => Some(format!("Bearer {k}")),
        (None, Some(u), Some(p)) => {
            Some(format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))))
        }
        (None, Some(_), None) => {
            bail!("authentication error: BACALHAU_API_USERNAME provided but not BACALHAU_API_PASSWORD")
        }
        (None, None, Some(_)) => {
            bail!("authentication error: BACALHAU_API_PASSWORD provided but not BACALHAU_API_USERNAME")
        }
        (None, None, None) => None,
    })
}

/// `bacalhau auth info`: which credentials this client would send, and what the server offers.
pub async fn info(client: &bacalhau_api::Client) -> Result<()> {
    let set = |k: &str| if std::env::var(k).is_ok_and(|v| !v.trim().is_empty()) { "Set" } else { "Not Set" };
    println!("\nTarget environment: {}\n", client.base_url());
    println!("Environment Variables:");
    println!("API Key: {}", set("BACALHAU_API_KEY"));
    println!("Username: {}", set("BACALHAU_API_USERNAME"));
    println!("Password: {}", set("BACALHAU_API_PASSWORD"));
    println!("\nNode SSO Authentication:");
    match client.authconfig().await {
        Ok(cfg) if cfg["Config"].as_object().is_some_and(|c| !c.is_empty()) => {
            println!("Provider Name: {}", cfg["Config"]["ProviderName"].as_str().unwrap_or_default());
            println!("Provider ID: {}", cfg["Config"]["ProviderID"].as_str().unwrap_or_default());
            println!("Version: {}", cfg["Version"].as_str().unwrap_or_default());
        }
        Ok(_) => println!("Server does not support SSO login"),
        Err(_) => {
            println!("Server does not support Basic Auth, API Keys, or SSO logins");
            return Ok(());
        }
    }
    println!("\nNote: Environment variables take precedence over other authentication mechanisms including SSO.");
    println!("To use SSO login, please unset Auth related environment variables first.");
    Ok(())
}

/// `bacalhau auth hash-password`: reads a password (one line of stdin) and prints its bcrypt
/// hash, for `API.Auth.Users[].Password`.
pub fn hash_password() -> Result<()> {
    use std::io::IsTerminal as _;
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("Enter password: ");
    }
    let mut line = String::new();
    stdin.read_line(&mut line)?;
    let password = line.trim();
    if password.is_empty() {
        bail!("password cannot be empty");
    }
    if password.len() > 100 {
        bail!("password exceeds maximum length of 100 characters");
    }
    println!("{}", bcrypt::hash(password, bcrypt::DEFAULT_COST)?);
    Ok(())
}
