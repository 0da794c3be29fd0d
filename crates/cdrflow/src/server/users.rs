//! API users: a TOML file of names, roles, bound numbers and salted argon2
//! password hashes, managed by `cdrflow user add|remove|list`.
//!
//! Names are compared in Unicode NFC, so `é` typed as one code point or as
//! `e` + combining accent is the same user.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context, Result};
use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString};
use argon2::Argon2;
use blake2::{Blake2b512, Digest};
use cdrflow_core::normalize::{normalize_msisdn, CountryCode, Msisdn};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use unicode_normalization::UnicodeNormalization;

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct UsersFile {
    #[serde(default, rename = "user")]
    pub users: Vec<User>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct User {
    pub name: String,
    /// Users files written before roles existed have none: they are operators,
    /// which is what every user could do then.
    #[serde(default)]
    pub role: Role,
    /// For customers: the numbers they may read, in E.164 (`+27821234567`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub msisdns: Vec<String>,
    /// PHC string: `$argon2id$v=19$m=...,t=...,p=...$salt$hash`.
    pub password_hash: String,
}

/// What a user may see over HTTP. Nobody manages users over HTTP: that is
/// `cdrflow user`, on the machine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything the API serves
    Admin,
    /// All usage, rejects, overview, metrics and the dashboard
    #[default]
    Operator,
    /// Only the usage of the numbers bound to the user (`--msisdn`)
    Customer,
    /// `/metrics` and nothing else (for Prometheus)
    Metrics,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Customer => "customer",
            Role::Metrics => "metrics",
        }
    }
}

/// A user name as compared: Unicode NFC.
pub fn normalize_name(name: &str) -> String {
    name.nfc().collect()
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

    /// Adds `name`, or gives an existing user a new password; `access`, when
    /// given, sets the role and bound numbers (otherwise an existing user
    /// keeps theirs and a new one is an operator).
    pub fn set_password(
        &mut self,
        name: &str,
        password: &str,
        access: Option<(Role, Vec<Msisdn>)>,
    ) -> Result<()> {
        let name = normalize_name(name);
        if name.is_empty() || name.contains(':') || name.chars().any(char::is_control) {
            bail!("a user name must be non-empty, without control characters, and must not contain `:` (Basic auth separates name and password with it)");
        }
        if password.len() < 8 {
            bail!("use a password of at least 8 characters");
        }
        if let Some((role, msisdns)) = &access {
            check_access(*role, msisdns)?;
        }
        let password_hash = hash_password(password)?;
        let user = match self
            .users
            .iter()
            .position(|u| normalize_name(&u.name) == name)
        {
            Some(i) => &mut self.users[i],
            None => {
                self.users.push(User {
                    name,
                    role: Role::Operator,
                    msisdns: Vec::new(),
                    password_hash: String::new(),
                });
                self.users.last_mut().expect("just pushed")
            }
        };
        user.password_hash = password_hash;
        if let Some((role, msisdns)) = access {
            user.role = role;
            user.msisdns = msisdns.iter().map(Msisdn::to_string).collect();
        }
        Ok(())
    }
}

/// A customer sees the numbers bound to them, so needs some; no one else has any.
fn check_access(role: Role, msisdns: &[Msisdn]) -> Result<()> {
    match (role, msisdns.is_empty()) {
        (Role::Customer, true) => bail!(
            "a customer needs at least one number: add --msisdn +27821234567 (repeat it for more)"
        ),
        (Role::Customer, false) | (_, true) => Ok(()),
        (other, false) => bail!(
            "--msisdn binds numbers to customers; a user with role {} already sees {}",
            other.as_str(),
            if other == Role::Metrics {
                "only /metrics"
            } else {
                "every number"
            }
        ),
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

/// Who a request comes from, once its credentials are checked.
#[derive(Debug)]
pub struct Principal {
    pub name: String,
    pub role: Role,
    /// For customers: the numbers they may read.
    pub msisdns: Vec<Msisdn>,
}

impl Principal {
    /// May this principal read `msisdn`'s usage?
    pub fn may_read(&self, msisdn: Msisdn) -> bool {
        match self.role {
            Role::Admin | Role::Operator => true,
            Role::Customer => self.msisdns.contains(&msisdn),
            Role::Metrics => false,
        }
    }
}

struct LoadedUser {
    principal: Arc<Principal>,
    password_hash: String,
}

fn loaded(users: Vec<User>) -> HashMap<String, LoadedUser> {
    users
        .into_iter()
        .map(|user| {
            let name = normalize_name(&user.name);
            let msisdns = user
                .msisdns
                .iter()
                .filter_map(|m| match normalize_msisdn(m, CountryCode::default()) {
                    Ok(msisdn) => Some(msisdn),
                    Err(why) => {
                        tracing::warn!("user {name}: ignoring the bound number `{m}`: it {why}");
                        None
                    }
                })
                .collect();
            let principal = Arc::new(Principal {
                name: name.clone(),
                role: user.role,
                msisdns,
            });
            (
                name,
                LoadedUser {
                    principal,
                    password_hash: user.password_hash,
                },
            )
        })
        .collect()
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
/// takes effect within [`RELOAD_INTERVAL`] (at once on SIGHUP), and forgets
/// every remembered credential, so a removed user or an old password stops
/// working at once.
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
    by_name: HashMap<String, LoadedUser>,
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
                by_name: loaded(UsersFile::load(path)?.users),
                stamp,
            }),
            last_check: Mutex::new(Instant::now()),
            dummy_hash: hash_password("not a real password")?,
            digest_key,
            verified: Mutex::new(HashMap::new()),
        })
    }

    /// Re-reads the users file when it changed, at most every
    /// [`RELOAD_INTERVAL`].
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
        self.reload();
    }

    /// Re-reads the users file now (SIGHUP); a file that cannot be read keeps
    /// the users loaded before (and says so).
    pub fn reload(&self) {
        let stamp = stamp_of(&self.path);
        match UsersFile::load(&self.path) {
            Ok(file) => {
                tracing::info!(users = file.users.len(), file = %self.path.display(), "users file reloaded");
                *self.users.write().unwrap_or_else(|p| p.into_inner()) = LoadedUsers {
                    by_name: loaded(file.users),
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

    /// The principal, when these credentials were verified before: a fast
    /// path only, never a reason to refuse. `name` is NFC already.
    pub fn verified_before(&self, name: &str, password: &str) -> Option<Arc<Principal>> {
        self.refresh();
        let digest = self.digest(name, password);
        let known = {
            let verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
            verified
                .get(name)
                .is_some_and(|known| bool::from(known.ct_eq(&digest)))
        };
        if !known {
            return None;
        }
        self.users
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .by_name
            .get(name)
            .map(|u| u.principal.clone())
    }

    /// Is `name` (NFC) a user in the file?
    pub fn is_user(&self, name: &str) -> bool {
        self.users
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .by_name
            .contains_key(name)
    }

    pub fn is_empty(&self) -> bool {
        self.refresh();
        self.users
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .by_name
            .is_empty()
    }

    /// The full argon2 check; `name` is NFC already. `memory` is argon2's
    /// working area, kept by the caller across checks (see [`CheckMemory`]).
    pub fn verify(
        &self,
        name: &str,
        password: &str,
        memory: &mut CheckMemory,
    ) -> Option<Arc<Principal>> {
        self.refresh();
        let user = {
            let users = self.users.read().unwrap_or_else(|p| p.into_inner());
            users
                .by_name
                .get(name)
                .map(|u| (u.principal.clone(), u.password_hash.clone()))
        };
        let stored = user
            .as_ref()
            .map_or(self.dummy_hash.as_str(), |(_, hash)| hash.as_str());
        let matches = memory.matches(stored, password);
        let (principal, _) = user.filter(|_| matches)?;
        let digest = self.digest(name, password);
        self.verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), digest);
        Some(principal)
    }
}

/// argon2's working memory (19 MiB with the default parameters), allocated
/// once and reused by every check on one thread. Letting argon2 allocate it
/// per check left each check's 19 MiB resident (glibc's dynamic mmap
/// threshold keeps freed blocks of that size in the arena): a server grew by
/// 19 MiB per failed login until it had hundreds of MiB.
#[derive(Default)]
pub struct CheckMemory(Vec<argon2::Block>);

impl CheckMemory {
    /// Does `password` hash to the PHC string `stored`? Constant-time compare.
    pub fn matches(&mut self, stored: &str, password: &str) -> bool {
        let Ok(hash) = PasswordHash::new(stored) else {
            return false;
        };
        let (Some(salt), Some(expected)) = (hash.salt, hash.hash) else {
            return false;
        };
        let (Ok(algorithm), Ok(params)) = (
            argon2::Algorithm::try_from(hash.algorithm),
            argon2::Params::try_from(&hash),
        ) else {
            return false;
        };
        let version = match hash.version.map(argon2::Version::try_from) {
            None => argon2::Version::default(),
            Some(Ok(version)) => version,
            Some(Err(_)) => return false,
        };
        let mut salt_bytes = [0u8; 64];
        let Ok(salt) = salt.decode_b64(&mut salt_bytes) else {
            return false;
        };
        let blocks = params.block_count();
        if self.0.len() < blocks {
            self.0.resize(blocks, argon2::Block::default());
        }
        let mut output = vec![0u8; expected.len()];
        Argon2::new(algorithm, version, params)
            .hash_password_into_with_memory(
                password.as_bytes(),
                salt,
                &mut output,
                &mut self.0[..blocks],
            )
            .is_ok()
            && bool::from(output.as_slice().ct_eq(expected.as_bytes()))
    }
}

/// `cdrflow user add|remove|list`.
#[derive(Debug, clap::Subcommand)]
pub enum UserCommand {
    /// Add a user, or set a new password for an existing one (password read from stdin)
    #[command(
        after_help = "Roles: admin and operator see everything the API serves; a customer \
only the usage of the numbers bound with --msisdn; metrics only /metrics.\n\
An existing user keeps their role and numbers unless --role is given."
    )]
    Add {
        name: String,
        /// What the user may see [default for a new user: operator]
        #[arg(long, value_enum)]
        role: Option<Role>,
        /// A number a customer may read (any spelling; repeat for more)
        #[arg(long = "msisdn", value_name = "MSISDN", requires = "role")]
        msisdns: Vec<String>,
    },
    /// Remove a user
    Remove { name: String },
    /// List users with their roles and numbers
    List,
}

pub fn default_users_file(data_dir: &Path) -> PathBuf {
    data_dir.join("users.toml")
}

pub fn run(path: &Path, country_code: CountryCode, command: UserCommand) -> Result<()> {
    let mut file = UsersFile::load(path)?;
    match command {
        UserCommand::Add {
            name,
            role,
            msisdns,
        } => {
            let numbers = msisdns
                .iter()
                .map(|raw| {
                    normalize_msisdn(raw, country_code).map_err(|why| {
                        anyhow::anyhow!("`{raw}` is not a subscriber number: it {why}")
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            if let Some(role) = role {
                // Before asking for a password that would then be refused.
                check_access(role, &numbers)?;
            }
            eprintln!("password for {name} (one line on stdin):");
            let mut password = String::new();
            std::io::stdin().read_line(&mut password)?;
            file.set_password(
                &name,
                password.trim_end_matches(['\n', '\r']),
                role.map(|r| (r, numbers)),
            )?;
            file.save(path)?;
            let name = normalize_name(&name);
            let user = file.users.iter().find(|u| u.name == name);
            let role = user.map_or("operator", |u| u.role.as_str());
            eprintln!("user {name} ({role}) saved in {}", path.display());
        }
        UserCommand::Remove { name } => {
            let name = normalize_name(&name);
            let before = file.users.len();
            file.users.retain(|u| normalize_name(&u.name) != name);
            if file.users.len() == before {
                bail!("no user {name} in {}", path.display());
            }
            file.save(path)?;
        }
        UserCommand::List => {
            for user in &file.users {
                if user.msisdns.is_empty() {
                    println!("{}\t{}", user.name, user.role.as_str());
                } else {
                    println!(
                        "{}\t{}\t{}",
                        user.name,
                        user.role.as_str(),
                        user.msisdns.join(",")
                    );
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::PasswordVerifier;

    fn temp(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("cdrflow-{name}-{}", std::process::id()))
    }

    #[test]
    fn verifies_only_the_right_password() {
        let mut file = UsersFile::default();
        file.set_password("alice", "correct horse", None).unwrap();
        assert!(file.set_password("bob", "short", None).is_err());
        assert!(file.users[0].password_hash.starts_with("$argon2"));
        let dir = temp("users");
        let path = dir.join("users.toml");
        file.save(&path).unwrap();
        let auth = Authenticator::watching(&path).unwrap();
        assert!(auth.verified_before("alice", "correct horse").is_none());
        let alice = auth
            .verify("alice", "correct horse", &mut CheckMemory::default())
            .unwrap();
        assert_eq!((alice.name.as_str(), alice.role), ("alice", Role::Operator));
        assert!(auth.verified_before("alice", "correct horse").is_some());
        assert!(auth.verified_before("alice", "wrong horse").is_none());
        assert!(auth
            .verify("alice", "wrong horse", &mut CheckMemory::default())
            .is_none());
        assert!(auth
            .verify("mallory", "correct horse", &mut CheckMemory::default())
            .is_none());
        assert!(
            auth.verify(
                "mallory",
                "not a real password",
                &mut CheckMemory::default()
            )
            .is_none(),
            "the dummy hash never lets anyone in"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn reused_check_memory_gives_argon2s_own_answers() {
        let stored = hash_password("correct horse").unwrap();
        let parsed = PasswordHash::new(&stored).unwrap();
        let mut memory = CheckMemory::default();
        for (password, expected) in [
            ("correct horse", true),
            ("wrong horse", false),
            ("correct horse", true),
        ] {
            let argon2s_own = Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok();
            assert_eq!(argon2s_own, expected);
            assert_eq!(memory.matches(&stored, password), expected, "{password}");
        }
        assert!(!memory.matches("not a hash", "correct horse"));
    }

    #[test]
    fn users_files_without_roles_are_operators() {
        let text = format!(
            "[[user]]\nname = \"old\"\npassword_hash = \"{}\"\n",
            hash_password("old password").unwrap()
        );
        let dir = temp("old-users");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("users.toml");
        std::fs::write(&path, text).unwrap();
        let auth = Authenticator::watching(&path).unwrap();
        assert_eq!(
            auth.verify("old", "old password", &mut CheckMemory::default())
                .unwrap()
                .role,
            Role::Operator
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn customers_read_only_their_numbers_and_names_compare_in_nfc() {
        let own = normalize_msisdn("+27821234567", CountryCode::default()).unwrap();
        let other = normalize_msisdn("+27821234568", CountryCode::default()).unwrap();
        let mut file = UsersFile::default();
        assert!(
            file.set_password("c", "long enough", Some((Role::Customer, vec![])))
                .is_err(),
            "a customer without numbers sees nothing: refused"
        );
        assert!(file
            .set_password("o", "long enough", Some((Role::Operator, vec![own])))
            .is_err());
        // "José" with a combining accent (NFD) is stored as NFC.
        file.set_password(
            "Jose\u{301}",
            "long enough",
            Some((Role::Customer, vec![own])),
        )
        .unwrap();
        assert_eq!(file.users[0].name, "Jos\u{e9}");
        let dir = temp("customers");
        let path = dir.join("users.toml");
        file.save(&path).unwrap();
        let auth = Authenticator::watching(&path).unwrap();
        let jose = auth
            .verify("Jos\u{e9}", "long enough", &mut CheckMemory::default())
            .unwrap();
        assert_eq!(jose.role, Role::Customer);
        assert!(jose.may_read(own));
        assert!(!jose.may_read(other));
        // A new password keeps the role and numbers.
        file.set_password("Jos\u{e9}", "another password", None)
            .unwrap();
        assert_eq!((file.users.len(), file.users[0].role), (1, Role::Customer));
        assert_eq!(file.users[0].msisdns, ["+27821234567"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_changed_users_file_takes_effect_without_a_restart() {
        use std::os::unix::fs::PermissionsExt;
        let dir = temp("reload");
        let path = dir.join("users.toml");
        let mut file = UsersFile::default();
        file.set_password("alice", "correct horse", None).unwrap();
        file.save(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "readable by its owner only");
        let auth = Authenticator::watching(&path).unwrap();
        assert!(auth
            .verify("alice", "correct horse", &mut CheckMemory::default())
            .is_some());
        assert!(auth.verified_before("alice", "correct horse").is_some());

        // alice changes her password and bob is added, while serving.
        file.set_password("alice", "battery staple", None).unwrap();
        file.set_password("bob", "bobs password", None).unwrap();
        file.save(&path).unwrap();
        std::thread::sleep(RELOAD_INTERVAL + Duration::from_millis(100));
        assert!(
            auth.verified_before("alice", "correct horse").is_none(),
            "the cache is cleared"
        );
        assert!(
            auth.verify("alice", "correct horse", &mut CheckMemory::default())
                .is_none(),
            "the old password is gone"
        );
        assert!(auth
            .verify("alice", "battery staple", &mut CheckMemory::default())
            .is_some());
        assert!(auth
            .verify("bob", "bobs password", &mut CheckMemory::default())
            .is_some());

        // bob is removed; a reload (as on SIGHUP) applies it at once.
        file.users.retain(|u| u.name != "bob");
        file.save(&path).unwrap();
        auth.reload();
        assert!(auth.verified_before("bob", "bobs password").is_none());
        assert!(auth
            .verify("bob", "bobs password", &mut CheckMemory::default())
            .is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
