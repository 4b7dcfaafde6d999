//! Accounts: `users.csv` and passwords hashed with Argon2id.
//!
//! `users.csv` (header `name,password_hash,role,created`) holds one row per account. The hash is
//! a PHC string (`$argon2id$v=19$...`) with its own random salt; no password is ever stored or
//! logged in clear. Every write replaces the file atomically: a temporary file in the same
//! directory is written, synced and renamed over the old one, so a crash leaves the old file or
//! the new one, never half of either. Checking passwords at login is the server's job
//! ([`crate::server::login`]).

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::SystemTime;

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::proto;

use crate::proto::names::NameMap;

/// The file name of the accounts inside the data directory.
pub const USERS_FILE: &str = "users.csv";

/// What an account may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Member,
    Admin,
}

pub use crate::proto::Standing;

impl From<Role> for Standing {
    fn from(role: Role) -> Standing {
        match role {
            Role::Member => Standing::Member,
            Role::Admin => Standing::Admin,
        }
    }
}

/// One row of `users.csv`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub name: String,
    pub password_hash: String,
    pub role: Role,
    pub created: String,
}

/// Hashes a password with Argon2id and a fresh random salt, as a PHC string.
pub fn hash_password(password: &str) -> Result<String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| Error::account(format!("cannot hash the password: {e}")))
}

/// Whether `password` matches the PHC string `hash`.
pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// The accounts of `users.csv`, found by any name that looks like theirs.
#[derive(Debug, Default, Clone)]
pub struct Accounts {
    by_key: NameMap<Account>,
    /// Accounts whose name looks like an earlier account's (written before names were
    /// compared by look): kept in the file, but nobody can log in to them.
    shadowed: Vec<Account>,
}

impl Accounts {
    /// Reads `path`; a missing file is no accounts.
    pub fn load(path: &Path) -> Result<Accounts> {
        let mut accounts = Accounts::default();
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(accounts),
            Err(e) => return Err(Error::io(format!("cannot open {}", path.display()), e)),
        };
        for row in csv::Reader::from_reader(file).deserialize::<Account>() {
            let account =
                row.map_err(|e| Error::csv(format!("cannot read {}", path.display()), e))?;
            if let Some(first) = accounts.by_key.get(&account.name) {
                log::warn!(
                    "{}: the account {} looks like the account {}, so nobody can log in to it; rename or remove one of them",
                    path.display(),
                    account.name,
                    first.name
                );
                accounts.shadowed.push(account);
                continue;
            }
            accounts.by_key.insert(&account.name.clone(), account);
        }
        Ok(accounts)
    }

    /// Writes all accounts to `path` atomically (temporary file, sync, rename, sync the dir).
    pub fn save(&self, path: &Path) -> Result<()> {
        let dir = path.parent().unwrap_or(Path::new("."));
        let tmp = dir.join(format!(".{USERS_FILE}.{}.tmp", std::process::id()));
        let io = |what: &str, e| Error::io(format!("{what} {}", tmp.display()), e);
        let mut w = csv::Writer::from_writer(
            crate::store::create_private_file(&tmp).map_err(|e| io("cannot create", e))?,
        );
        let all = self.list();
        if all.is_empty() {
            w.write_record(["name", "password_hash", "role", "created"])
                .map_err(|e| Error::csv("cannot write users", e))?;
        }
        for a in all {
            w.serialize(a)
                .map_err(|e| Error::csv("cannot write users", e))?;
        }
        let mut file = w
            .into_inner()
            .map_err(|e| io("cannot write", e.into_error()))?;
        file.flush().map_err(|e| io("cannot write", e))?;
        file.sync_all().map_err(|e| io("cannot sync", e))?;
        fs::rename(&tmp, path).map_err(|e| io("cannot rename", e))?;
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<&Account> {
        self.by_key.get(name)
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// Adds an account; an existing name is an error.
    pub fn add(&mut self, name: &str, password: &str, role: Role) -> Result<()> {
        proto::validate_name(name).map_err(|e| Error::account(e.to_string()))?;
        if let Some(existing) = self.by_key.get(name) {
            let msg =
                if crate::proto::names::fold(&existing.name) == crate::proto::names::fold(name) {
                    format!("the account {name} exists already")
                } else {
                    format!("{name} looks like the account {}", existing.name)
                };
            return Err(Error::account(msg));
        }
        let account = Account {
            name: name.to_string(),
            password_hash: hash_password(password)?,
            role,
            created: crate::store::now_timestamp(),
        };
        self.by_key.insert(name, account);
        Ok(())
    }

    pub fn set_password(&mut self, name: &str, password: &str) -> Result<()> {
        let hash = hash_password(password)?;
        let account = self.get_mut(name)?;
        account.password_hash = hash;
        Ok(())
    }

    pub fn set_role(&mut self, name: &str, role: Role) -> Result<()> {
        self.get_mut(name)?.role = role;
        Ok(())
    }

    pub fn remove(&mut self, name: &str) -> Result<Account> {
        if let Some(i) = self.shadowed.iter().position(|a| a.name == name) {
            return Ok(self.shadowed.remove(i));
        }
        self.by_key
            .remove(name)
            .ok_or_else(|| Error::account(format!("there is no account {name}")))
    }

    /// Accounts, oldest first.
    pub fn list(&self) -> Vec<&Account> {
        let mut all: Vec<&Account> = self.by_key.values().chain(&self.shadowed).collect();
        all.sort_by(|a, b| a.created.cmp(&b.created).then(a.name.cmp(&b.name)));
        all
    }

    fn get_mut(&mut self, name: &str) -> Result<&mut Account> {
        self.by_key
            .get_mut(name)
            .ok_or_else(|| Error::account(format!("there is no account {name}")))
    }
}

/// The accounts as the running server sees them: reloaded when `users.csv` changes on disk
/// (so `chat-server users add` takes effect without a restart), and written back by `/op`.
pub struct Directory {
    path: PathBuf,
    state: RwLock<State>,
}

/// The accounts, and the modification time of the file they were read from.
type State = (Accounts, Option<SystemTime>);

impl Directory {
    pub fn open(path: PathBuf) -> Result<Directory> {
        let accounts = Accounts::load(&path)?;
        let mtime = fs::metadata(&path).and_then(|m| m.modified()).ok();
        Ok(Directory {
            path,
            state: RwLock::new((accounts, mtime)),
        })
    }

    /// The account of `name`, reading `users.csv` again first if it changed.
    pub fn lookup(&self, name: &str) -> Option<Account> {
        self.refresh();
        self.cached(name)
    }

    /// The account of `name` as of the last [`refresh`](Self::refresh): no file access.
    pub fn cached(&self, name: &str) -> Option<Account> {
        let state = self.state.read().unwrap_or_else(|p| p.into_inner());
        state.0.get(name).cloned()
    }

    /// Reads `users.csv` again if it changed. Out of line: the `stat` alone takes most of a
    /// kilobyte of stack, so a connection's reader calls this where its stack is shallow
    /// (before parsing a name), and looks the name up with [`cached`](Self::cached).
    #[inline(never)]
    pub fn refresh(&self) {
        let mtime = fs::metadata(&self.path).and_then(|m| m.modified()).ok();
        let fresh = self.state.read().unwrap_or_else(|p| p.into_inner()).1 == mtime;
        if !fresh {
            drop(self.reload(mtime));
        }
    }

    /// Reads `users.csv` again (it changed). Out of line and cold: a CSV reader is kilobytes
    /// of stack, and inlined into `lookup` it made every connection's reader thread touch one
    /// more page of stack (4 KiB per connection), although it runs only when the file changes.
    #[cold]
    #[inline(never)]
    fn reload(&self, mtime: Option<SystemTime>) -> std::sync::RwLockWriteGuard<'_, State> {
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        match Accounts::load(&self.path) {
            Ok(accounts) => *state = (accounts, mtime),
            Err(e) => log::error!("{e}; keeping the accounts read before"),
        }
        state
    }

    /// True when at least one account exists.
    pub fn any(&self) -> bool {
        !self
            .state
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .is_empty()
    }

    /// Changes a role and writes `users.csv`.
    pub fn set_role(&self, name: &str, role: Role) -> Result<()> {
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        let mut accounts = Accounts::load(&self.path)?;
        accounts.set_role(name, role)?;
        accounts.save(&self.path)?;
        let mtime = fs::metadata(&self.path).and_then(|m| m.modified()).ok();
        *state = (accounts, mtime);
        Ok(())
    }
}

/// `chat-server users ...`: manage the accounts in `users.csv`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum UsersCommand {
    /// Create an account; the password is read from the terminal (without echo) or stdin.
    Add {
        name: String,
        /// Make it an administrator.
        #[arg(long)]
        admin: bool,
    },
    /// Set a new password.
    Passwd { name: String },
    /// Delete an account.
    Remove { name: String },
    /// List the accounts (never their hashes).
    List,
}

/// Runs a `users` command on the `users.csv` of `data_dir`; `password` asks for a password
/// (the caller decides how), which must have at least `min_password` characters. Returns
/// what to print. Only `add` creates a missing `data_dir`: the others say it does not exist,
/// so a mistyped `--data-dir` is not an empty list.
pub fn users_command(
    data_dir: &Path,
    command: &UsersCommand,
    min_password: usize,
    mut password: impl FnMut(&str) -> Result<String>,
) -> Result<String> {
    if matches!(command, UsersCommand::Add { .. }) {
        crate::store::create_private_dir(data_dir)?;
    } else {
        crate::store::existing_dir(data_dir)?;
    }
    let path = data_dir.join(USERS_FILE);
    let mut accounts = Accounts::load(&path)?;
    let checked = |pw: String| check_password(&pw, min_password).map(|()| pw);
    let out = match command {
        UsersCommand::Add { name, admin } => {
            if accounts.get(name).is_some() {
                return Err(Error::account(format!("the account {name} exists already")));
            }
            let pw = checked(password(name)?)?;
            let role = if *admin { Role::Admin } else { Role::Member };
            accounts.add(name, &pw, role)?;
            format!("added {name} ({})", if *admin { "admin" } else { "member" })
        }
        UsersCommand::Passwd { name } => {
            if accounts.get(name).is_none() {
                return Err(Error::account(format!("there is no account {name}")));
            }
            let pw = checked(password(name)?)?;
            accounts.set_password(name, &pw)?;
            format!("changed the password of {name}")
        }
        UsersCommand::Remove { name } => {
            let gone = accounts.remove(name)?;
            format!("removed {}", gone.name)
        }
        UsersCommand::List => {
            let mut out = String::new();
            for a in accounts.list() {
                let role = match a.role {
                    Role::Admin => "admin",
                    Role::Member => "member",
                };
                out.push_str(&format!(
                    "{:<32} {:<6} created {}\n",
                    a.name, role, a.created
                ));
            }
            return Ok(out);
        }
    };
    accounts.save(&path)?;
    Ok(out)
}

/// Whether `password` is long enough: at least `min` characters (not bytes), and never empty.
pub fn check_password(password: &str, min: usize) -> Result<()> {
    let len = password.chars().count();
    if len == 0 {
        return Err(Error::account("the password is empty"));
    }
    if len < min {
        let plural = if min == 1 { "" } else { "s" };
        return Err(Error::account(format!(
            "the password is too short: {len} of at least {min} character{plural}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_hashed_with_argon2id_and_a_salt_each() {
        let a = hash_password("correct horse").unwrap();
        let b = hash_password("correct horse").unwrap();
        assert!(a.starts_with("$argon2id$"), "{a}");
        assert_ne!(a, b, "each hash has its own salt");
        assert!(verify_password("correct horse", &a));
        assert!(!verify_password("wrong horse", &a));
        assert!(!verify_password("x", "not a phc string"));
    }

    #[test]
    fn accounts_round_trip_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(USERS_FILE);
        let mut accounts = Accounts::load(&path).unwrap();
        assert!(accounts.is_empty());
        accounts.add("Alice", "first pw", Role::Admin).unwrap();
        accounts.add("bob", "second pw", Role::Member).unwrap();
        assert!(accounts.add("ALICE", "x", Role::Member).is_err());
        assert!(accounts.add("bad name", "x", Role::Member).is_err());
        accounts.save(&path).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("name,password_hash,role,created\n"),
            "{text}"
        );
        // (With spaces: a PHC string never holds one, so this cannot match a hash by chance.)
        assert!(!text.contains("first pw") && !text.contains("second pw"));
        let back = Accounts::load(&path).unwrap();
        assert_eq!(back.get("alice").unwrap().role, Role::Admin);
        assert!(verify_password(
            "second pw",
            &back.get("BOB").unwrap().password_hash
        ));
        // Nothing but the file is left in the directory: the temporary file was renamed.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    /// A symbolic link to itself: opening it fails with an error other than "not found".
    fn unreadable(dir: &Path, file: &str) -> PathBuf {
        let path = dir.join(file);
        std::os::unix::fs::symlink(&path, &path).unwrap();
        path
    }

    #[test]
    fn an_unreadable_users_file_is_an_error_not_no_accounts() {
        let dir = tempfile::tempdir().unwrap();
        let path = unreadable(dir.path(), USERS_FILE);
        let err = Accounts::load(&path).unwrap_err().to_string();
        assert!(err.contains("cannot open"), "{err}");
        assert!(Directory::open(path).is_err());
    }

    #[test]
    fn roles_map_to_standings() {
        assert_eq!(Standing::from(Role::Admin), Standing::Admin);
        assert_eq!(Standing::from(Role::Member), Standing::Member);
    }

    #[test]
    fn passwords_roles_and_removal_change_the_account() {
        let mut accounts = Accounts::default();
        accounts.add("carol", "old", Role::Member).unwrap();
        accounts.set_password("CAROL", "new").unwrap();
        let hash = &accounts.get("carol").unwrap().password_hash;
        assert!(verify_password("new", hash) && !verify_password("old", hash));
        accounts.set_role("carol", Role::Admin).unwrap();
        assert_eq!(accounts.get("carol").unwrap().role, Role::Admin);
        assert!(accounts.set_role("nobody", Role::Admin).is_err());
        assert!(accounts.set_password("nobody", "x").is_err());
        assert_eq!(accounts.remove("Carol").unwrap().name, "carol");
        assert!(accounts.get("carol").is_none() && accounts.is_empty());
        assert!(accounts.remove("carol").is_err());
    }

    #[test]
    fn adding_a_name_taken_says_whether_it_is_the_same_or_a_look_alike() {
        let mut accounts = Accounts::default();
        accounts.add("boss", "pw", Role::Member).unwrap();
        let same = accounts.add("BOSS", "pw", Role::Member).unwrap_err();
        assert_eq!(same.to_string(), "the account BOSS exists already");
        let alike = accounts.add("b0ss", "pw", Role::Member).unwrap_err();
        assert_eq!(alike.to_string(), "b0ss looks like the account boss");
    }

    #[test]
    fn a_shadowed_row_is_removed_by_its_exact_name_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(USERS_FILE);
        // The second row looks like the first (a Cyrillic о): kept, but nobody can use it.
        fs::write(
            &path,
            "name,password_hash,role,created\n\
             boss,x,admin,2026-01-01T00:00:00Z\n\
             b\u{43e}ss,x,member,2026-01-02T00:00:00Z\n",
        )
        .unwrap();
        let mut accounts = Accounts::load(&path).unwrap();
        assert_eq!(accounts.list().len(), 2);
        assert_eq!(accounts.remove("boss").unwrap().name, "boss");
        assert_eq!(accounts.list()[0].name, "b\u{43e}ss");
        assert_eq!(accounts.remove("b\u{43e}ss").unwrap().name, "b\u{43e}ss");
        assert!(accounts.is_empty());
    }

    #[test]
    fn the_directory_rereads_the_file_when_it_changes_and_writes_roles() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(USERS_FILE);
        let directory = Directory::open(path.clone()).unwrap();
        assert!(!directory.any());
        assert!(directory.lookup("dave").is_none());
        // Another process (`chat-server users add`) writes the file.
        let mut accounts = Accounts::default();
        accounts.add("dave", "pw", Role::Member).unwrap();
        accounts.save(&path).unwrap();
        assert_eq!(directory.lookup("DAVE").unwrap().name, "dave");
        assert!(directory.any());
        directory.set_role("dave", Role::Admin).unwrap();
        assert_eq!(directory.lookup("dave").unwrap().role, Role::Admin);
        assert_eq!(
            Accounts::load(&path).unwrap().get("dave").unwrap().role,
            Role::Admin
        );
        assert!(directory.set_role("nobody", Role::Admin).is_err());
    }

    #[test]
    fn a_password_needs_the_minimum_length_in_characters() {
        assert!(check_password("12345678", 8).is_ok());
        // Eight characters, sixteen bytes.
        assert!(check_password("éééééééé", 8).is_ok());
        let short = check_password("1234567", 8).unwrap_err().to_string();
        assert_eq!(
            short,
            "the password is too short: 7 of at least 8 characters"
        );
        assert!(check_password("", 0).is_err());
    }

    #[test]
    fn only_users_add_creates_a_missing_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let none = |_: &str| -> Result<String> { unreachable!("no password is asked") };
        for command in [
            UsersCommand::List,
            UsersCommand::Remove { name: "x".into() },
            UsersCommand::Passwd { name: "x".into() },
        ] {
            let e = users_command(&data, &command, 8, none).unwrap_err();
            assert!(
                e.to_string().contains("cannot open the data directory"),
                "{e}"
            );
            assert!(!data.exists(), "{command:?} created {}", data.display());
        }
        let add = UsersCommand::Add {
            name: "jo".into(),
            admin: false,
        };
        users_command(&data, &add, 8, |_| Ok("long enough".into())).unwrap();
        assert!(data.join(USERS_FILE).exists());
    }

    #[test]
    fn the_users_command_adds_changes_lists_and_removes() {
        let dir = tempfile::tempdir().unwrap();
        let run = |command: UsersCommand, pw: &str| {
            let pw = pw.to_string();
            users_command(dir.path(), &command, 3, |_| Ok(pw.clone()))
        };
        let add = |name: &str, admin| UsersCommand::Add {
            name: name.into(),
            admin,
        };
        assert_eq!(run(add("gina", true), "pw1").unwrap(), "added gina (admin)");
        assert_eq!(run(add("hal", false), "pw2").unwrap(), "added hal (member)");
        assert!(run(add("GINA", false), "x").is_err());
        assert!(run(add("ivan", false), "").is_err(), "an empty password");
        assert!(run(add("ivan", false), "ab").is_err(), "a short password");
        let list = run(UsersCommand::List, "").unwrap();
        let lines: Vec<&str> = list.lines().collect();
        assert_eq!(lines.len(), 2, "{list}");
        assert!(
            lines[0].starts_with("gina") && lines[0].contains("admin"),
            "{list}"
        );
        assert!(
            lines[1].starts_with("hal") && lines[1].contains("member"),
            "{list}"
        );
        assert!(!list.contains("argon2"));
        let passwd = UsersCommand::Passwd { name: "hal".into() };
        assert_eq!(run(passwd, "pw3").unwrap(), "changed the password of hal");
        let accounts = Accounts::load(&dir.path().join(USERS_FILE)).unwrap();
        assert!(verify_password(
            "pw3",
            &accounts.get("hal").unwrap().password_hash
        ));
        let passwd = UsersCommand::Passwd {
            name: "nobody".into(),
        };
        assert!(run(passwd, "x").is_err());
        let remove = UsersCommand::Remove { name: "HAL".into() };
        assert_eq!(run(remove, "").unwrap(), "removed hal");
        assert!(
            Accounts::load(&dir.path().join(USERS_FILE))
                .unwrap()
                .get("hal")
                .is_none()
        );
    }
}
