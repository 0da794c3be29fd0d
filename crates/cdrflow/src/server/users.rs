//! API users: a TOML file of names and salted argon2 password hashes,
//! managed by `cdrflow user add|remove|list`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{bail, Context, Result};
use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use blake2::{Blake2b512, Digest};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct UsersFile {
    #[serde(default, rename = "user")]
    pub users: Vec<User>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct User {
    pub name: String,
    /// PHC string: `$argon2id$v=19$m=...,t=...,p=...$salt$hash`.
    pub password_hash: String,
}

impl UsersFile {
    pub fn load(path: &Path) -> Result<UsersFile> {
        match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text)
                .with_context(|| format!("the users file {} is invalid", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(UsersFile::default()),
            Err(e) => {
                Err(e).with_context(|| format!("cannot read the users file {}", path.display()))
            }
        }
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let text = toml::to_string(self).context("cannot encode the users file")?;
        // Write then rename, so a crash never leaves a half-written file.
        let temporary = path.with_extension("tmp");
        std::fs::write(&temporary, text)
            .with_context(|| format!("cannot write {}", temporary.display()))?;
        std::fs::rename(&temporary, path)
            .with_context(|| format!("cannot replace {}", path.display()))?;
        Ok(())
    }

    pub fn set_password(&mut self, name: &str, password: &str) -> Result<()> {
        if name.is_empty() || name.contains(':') {
            bail!("a user name must be non-empty and must not contain `:` (Basic auth separates name and password with it)");
        }
        if password.len() < 8 {
            bail!("use a password of at least 8 characters");
        }
        let password_hash = hash_password(password)?;
        match self.users.iter_mut().find(|u| u.name == name) {
            Some(user) => user.password_hash = password_hash,
            None => self.users.push(User {
                name: name.to_string(),
                password_hash,
            }),
        }
        Ok(())
    }
}

/// 16 random characters from the OS generator, for generated demo credentials.
pub fn random_password() -> String {
    // A salt string is 22 random base64 characters: the same quality we need here.
    SaltString::generate(&mut OsRng)
        .as_str()
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(16)
        .collect()
}

pub fn hash_password(password: &str) -> Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("cannot hash the password: {e}"))
}

/// Checks credentials. An unknown name is checked against a dummy hash, so
/// the answer takes as long as for a known one and leaks nothing; argon2's
/// own comparison is constant-time.
///
/// argon2 is slow on purpose (tens of milliseconds), which no API serving
/// thousands of requests a second can pay per request. So a successful check
/// is remembered, in memory only, as a keyed BLAKE2b digest of the
/// credentials under a random per-process key; a later request with the same
/// credentials is compared against it in constant time instead.
pub struct Authenticator {
    users: Vec<User>,
    dummy_hash: String,
    digest_key: [u8; 32],
    verified: Mutex<HashMap<String, [u8; 64]>>,
}

impl Authenticator {
    pub fn new(file: UsersFile) -> Result<Authenticator> {
        let mut digest_key = [0u8; 32];
        OsRng.fill_bytes(&mut digest_key);
        Ok(Authenticator {
            users: file.users,
            dummy_hash: hash_password("not a real password")?,
            digest_key,
            verified: Mutex::new(HashMap::new()),
        })
    }

    fn digest(&self, name: &str, password: &str) -> [u8; 64] {
        let mut hasher = Blake2b512::new();
        hasher.update(self.digest_key);
        hasher.update((name.len() as u64).to_le_bytes());
        hasher.update(name.as_bytes());
        hasher.update(password.as_bytes());
        hasher.finalize().into()
    }

    /// True when these credentials were verified before: a fast path only,
    /// never a reason to refuse.
    pub fn verified_before(&self, name: &str, password: &str) -> bool {
        let digest = self.digest(name, password);
        let verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        verified
            .get(name)
            .is_some_and(|known| bool::from(known.ct_eq(&digest)))
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    pub fn verify(&self, name: &str, password: &str) -> bool {
        let user = self.users.iter().find(|u| u.name == name);
        let stored = user.map_or(self.dummy_hash.as_str(), |u| u.password_hash.as_str());
        let matches = PasswordHash::new(stored)
            .map(|hash| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &hash)
                    .is_ok()
            })
            .unwrap_or(false);
        let accepted = matches && user.is_some();
        if accepted {
            let digest = self.digest(name, password);
            self.verified
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(name.to_string(), digest);
        }
        accepted
    }
}

/// `cdrflow user add|remove|list`.
#[derive(Debug, clap::Subcommand)]
pub enum UserCommand {
    /// Add a user, or set a new password for an existing one (password read from stdin)
    Add { name: String },
    /// Remove a user
    Remove { name: String },
    /// List user names
    List,
}

pub fn default_users_file(data_dir: &Path) -> PathBuf {
    data_dir.join("users.toml")
}

pub fn run(path: &Path, command: UserCommand) -> Result<()> {
    let mut file = UsersFile::load(path)?;
    match command {
        UserCommand::Add { name } => {
            eprintln!("password for {name} (one line on stdin):");
            let mut password = String::new();
            std::io::stdin().read_line(&mut password)?;
            file.set_password(&name, password.trim_end_matches(['\n', '\r']))?;
            file.save(path)?;
            eprintln!("user {name} saved in {}", path.display());
        }
        UserCommand::Remove { name } => {
            let before = file.users.len();
            file.users.retain(|u| u.name != name);
            if file.users.len() == before {
                bail!("no user {name} in {}", path.display());
            }
            file.save(path)?;
        }
        UserCommand::List => {
            for user in &file.users {
                println!("{}", user.name);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_only_the_right_password() {
        let mut file = UsersFile::default();
        file.set_password("alice", "correct horse").unwrap();
        assert!(file.set_password("bob", "short").is_err());
        assert!(file.users[0].password_hash.starts_with("$argon2"));
        let auth = Authenticator::new(file).unwrap();
        assert!(!auth.verified_before("alice", "correct horse"));
        assert!(auth.verify("alice", "correct horse"));
        assert!(auth.verified_before("alice", "correct horse"));
        assert!(!auth.verified_before("alice", "wrong horse"));
        assert!(!auth.verify("alice", "wrong horse"));
        assert!(!auth.verify("mallory", "correct horse"));
        assert!(
            !auth.verify("mallory", "not a real password"),
            "the dummy hash never lets anyone in"
        );
    }
}
