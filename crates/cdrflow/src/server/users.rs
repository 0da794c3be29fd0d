//! API users: a TOML file of names and salted argon2 password hashes,
//! managed by `cdrflow user add|remove|list`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

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
        // Password hashes: readable by the owner only.
        let mut file = {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&temporary)
        }
        .with_context(|| format!("cannot write {}", temporary.display()))?;
        std::io::Write::write_all(&mut file, text.as_bytes())
            .with_context(|| format!("cannot write {}", temporary.display()))?;
        drop(file);
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
///
/// The users file is watched: a change (`cdrflow user add|remove`, an edit)
/// takes effect within [`RELOAD_INTERVAL`], and forgets every remembered
/// credential, so a removed user or an old password stops working at once.
pub struct Authenticator {
    path: PathBuf,
    users: RwLock<LoadedUsers>,
    last_check: Mutex<Instant>,
    dummy_hash: String,
    digest_key: [u8; 32],
    verified: Mutex<HashMap<String, [u8; 64]>>,
}

/// How often, at most, the users file is checked for changes.
pub const RELOAD_INTERVAL: Duration = Duration::from_millis(500);

struct LoadedUsers {
    users: Vec<User>,
    /// What the file looked like when read: a change of any of these is a new file.
    stamp: Option<(SystemTime, u64, u64)>,
}

fn stamp_of(path: &Path) -> Option<(SystemTime, u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len(), meta.ino()))
}

impl Authenticator {
    /// Loads the users file at `path` (none yet is no users) and watches it.
    pub fn watching(path: &Path) -> Result<Authenticator> {
        let mut digest_key = [0u8; 32];
        OsRng.fill_bytes(&mut digest_key);
        let stamp = stamp_of(path);
        Ok(Authenticator {
            path: path.to_path_buf(),
            users: RwLock::new(LoadedUsers {
                users: UsersFile::load(path)?.users,
                stamp,
            }),
            last_check: Mutex::new(Instant::now()),
            dummy_hash: hash_password("not a real password")?,
            digest_key,
            verified: Mutex::new(HashMap::new()),
        })
    }

    /// Re-reads the users file when it changed; a file that cannot be read
    /// keeps the users loaded before (and says so).
    fn refresh(&self) {
        {
            let mut last = self.last_check.lock().unwrap_or_else(|p| p.into_inner());
            if last.elapsed() < RELOAD_INTERVAL {
                return;
            }
            *last = Instant::now();
        }
        let stamp = stamp_of(&self.path);
        if self.users.read().unwrap_or_else(|p| p.into_inner()).stamp == stamp {
            return;
        }
        match UsersFile::load(&self.path) {
            Ok(file) => {
                tracing::info!(users = file.users.len(), file = %self.path.display(), "users file changed; reloaded");
                *self.users.write().unwrap_or_else(|p| p.into_inner()) = LoadedUsers {
                    users: file.users,
                    stamp,
                };
                self.verified
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clear();
            }
            Err(e) => tracing::warn!("{e:#}; keeping the users loaded before"),
        }
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
        self.refresh();
        let digest = self.digest(name, password);
        let verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        verified
            .get(name)
            .is_some_and(|known| bool::from(known.ct_eq(&digest)))
    }

    pub fn is_empty(&self) -> bool {
        self.refresh();
        self.users
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .users
            .is_empty()
    }

    pub fn verify(&self, name: &str, password: &str) -> bool {
        self.refresh();
        let user = self
            .users
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .users
            .iter()
            .find(|u| u.name == name)
            .cloned();
        let stored = user
            .as_ref()
            .map_or(self.dummy_hash.as_str(), |u| u.password_hash.as_str());
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
        let dir = std::env::temp_dir().join(format!("cdrflow-users-{}", std::process::id()));
        let path = dir.join("users.toml");
        file.save(&path).unwrap();
        let auth = Authenticator::watching(&path).unwrap();
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
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_changed_users_file_takes_effect_without_a_restart() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("cdrflow-reload-{}", std::process::id()));
        let path = dir.join("users.toml");
        let mut file = UsersFile::default();
        file.set_password("alice", "correct horse").unwrap();
        file.save(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "readable by its owner only");
        let auth = Authenticator::watching(&path).unwrap();
        assert!(auth.verify("alice", "correct horse"));
        assert!(auth.verified_before("alice", "correct horse"));

        // alice changes her password and bob is added, while serving.
        file.set_password("alice", "battery staple").unwrap();
        file.set_password("bob", "bobs password").unwrap();
        file.save(&path).unwrap();
        std::thread::sleep(RELOAD_INTERVAL + Duration::from_millis(100));
        assert!(
            !auth.verified_before("alice", "correct horse"),
            "the cache is cleared"
        );
        assert!(
            !auth.verify("alice", "correct horse"),
            "the old password is gone"
        );
        assert!(auth.verify("alice", "battery staple"));
        assert!(auth.verify("bob", "bobs password"));

        // bob is removed.
        file.users.retain(|u| u.name != "bob");
        file.save(&path).unwrap();
        std::thread::sleep(RELOAD_INTERVAL + Duration::from_millis(100));
        assert!(!auth.verified_before("bob", "bobs password"));
        assert!(!auth.verify("bob", "bobs password"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
