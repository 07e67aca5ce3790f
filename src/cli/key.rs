//! `snap key list | add | remove ID | passwd`: manage the passwords that open a repository.

use std::path::PathBuf;

use anyhow::Result;
use snap::keyfile::{DEFAULT_ITERATIONS, DEFAULT_MEMORY_KIB, MAX_MEMORY_KIB, MIN_MEMORY_KIB};
use snap::repo::keys;
use snap::repo::lock::Operation;
use zeroize::Zeroizing;

use super::Ctx;

#[derive(clap::Subcommand)]
pub enum Key {
    /// List key files (the one in use is marked)
    List,
    /// Add a password (from --new-password-file or SNAP_NEW_PASSWORD)
    Add {
        #[command(flatten)]
        password: NewPassword,
        /// The new key may add to the repository (backup, key add of append-only keys) but
        /// never delete or overwrite (forget, prune, key remove/passwd refuse with exit 17).
        /// Pair it with storage that refuses deletes (see README); a session opened with an
        /// append-only key only ever adds append-only keys
        #[arg(long)]
        append_only: bool,
    },
    /// Remove a key by id prefix (not the last one, not the one in use)
    Remove { id: String },
    /// Change the password in use (the new key is written before the old is removed)
    Passwd(NewPassword),
}

#[derive(clap::Args)]
pub struct NewPassword {
    /// File whose first line is the new password
    #[arg(long)]
    new_password_file: Option<PathBuf>,
    /// argon2id memory in KiB for the new key file (lower only for tests; never below the floor)
    #[arg(long, hide = true,
          value_parser = clap::value_parser!(u32).range(MIN_MEMORY_KIB as i64..=MAX_MEMORY_KIB as i64))]
    kdf_memory_kib: Option<u32>,
}

impl NewPassword {
    fn password(&self) -> Result<Zeroizing<String>> {
        if let Some(f) = &self.new_password_file {
            return super::read_password_file(f);
        }
        match std::env::var("SNAP_NEW_PASSWORD") {
            Ok(p) if !p.is_empty() => Ok(Zeroizing::new(p)),
            _ => {
                anyhow::bail!("no new password: pass --new-password-file or set SNAP_NEW_PASSWORD")
            }
        }
    }

    fn cost(&self) -> (u32, u32) {
        match self.kdf_memory_kib {
            Some(m) => (m, 1),
            None => (DEFAULT_MEMORY_KIB, DEFAULT_ITERATIONS),
        }
    }
}

pub fn run(ctx: &Ctx, cmd: Key) -> Result<u8> {
    let mut repo = ctx.open()?;
    let op = match &cmd {
        Key::List => Operation::KeyList,
        Key::Add { .. } => Operation::KeyAdd,
        Key::Remove { .. } => Operation::KeyRemove,
        Key::Passwd(_) => Operation::KeyPasswd,
    };
    // Held until the key files are written or removed: they are read again under the lock.
    let _lock = ctx.lock(&mut repo, op)?;
    let (what, id, ao) = match cmd {
        Key::List => {
            let list = keys::list(&repo)?;
            if ctx.json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                for k in &list {
                    println!(
                        "{} {:<8} {:<12} {:<10} {}{}",
                        if k.current { "*" } else { " " },
                        &k.id[..8.min(k.id.len())],
                        k.host,
                        k.user,
                        k.created,
                        if k.append_only { "  append-only" } else { "" }
                    );
                }
            }
            return Ok(0);
        }
        Key::Add {
            password: p,
            append_only,
        } => {
            let (m, t) = p.cost();
            let (id, ao) = keys::add(&repo, p.password()?.as_bytes(), m, t, append_only)?;
            if ao && !append_only && !ctx.quiet {
                eprintln!(
                    "snap: this session was opened with an append-only key, so the new key is \
                     append-only too"
                );
            }
            ("added", id.to_hex(), ao)
        }
        Key::Remove { id } => ("removed", keys::remove(&repo, &id)?, false),
        Key::Passwd(p) => {
            let (m, t) = p.cost();
            (
                "replaced the key in use with",
                keys::passwd(&repo, p.password()?.as_bytes(), m, t)?.to_hex(),
                repo.append_only(),
            )
        }
    };
    if ctx.json {
        println!(
            "{}",
            serde_json::json!({"action": what, "key": id, "append_only": ao})
        );
    } else if !ctx.quiet {
        let kind = if ao { "append-only key" } else { "key" };
        println!("{what} {kind} {}", &id[..8.min(id.len())]);
    }
    Ok(0)
}
