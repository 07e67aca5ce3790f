//! `snap init`: create a repository.

use std::path::PathBuf;

use anyhow::Result;
use snap::keyfile::{MAX_MEMORY_KIB, MIN_MEMORY_KIB};
use snap::repo::{self, InitOptions};

use super::Ctx;

#[derive(clap::Args)]
pub struct Args {
    /// Target pack size in MiB (1 to 1024)
    // Bounded here so `MiB × 2^20` cannot wrap a u32 into a different, valid size (4097 would
    // become 1 MiB); the range is the config's (1 MiB ..= 1 GiB).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pack_size_mib: Option<u32>,
    /// zstd level for new blobs (0 = no compression)
    #[arg(long)]
    compression: Option<i32>,
    /// Chunk sizes in KiB as MIN,AVG,MAX (fixed for the life of the repository)
    #[arg(long, value_parser = parse_chunker)]
    chunker_kib: Option<(u32, u32, u32)>,
    /// Chunk sizes in KiB for database dump streams, MIN,AVG,MAX
    #[arg(long, value_parser = parse_chunker)]
    db_chunker_kib: Option<(u32, u32, u32)>,
    /// Share this repository's blob ids and chunker parameters, so `snap copy` between the two
    /// moves blobs as they are (the new repository still has its own encryption key, id and
    /// passwords)
    #[arg(long, value_name = "URL", conflicts_with_all = ["chunker_kib", "db_chunker_kib"])]
    from_repo: Option<String>,
    /// Password file of the --from-repo repository (default: the new repository's password)
    #[arg(long, value_name = "FILE", requires = "from_repo")]
    from_password_file: Option<PathBuf>,
    /// argon2id memory in KiB for the key file (lower only for tests; never below the floor)
    #[arg(long, hide = true,
          value_parser = clap::value_parser!(u32).range(MIN_MEMORY_KIB as i64..=MAX_MEMORY_KIB as i64))]
    kdf_memory_kib: Option<u32>,
}

/// `MIN,AVG,MAX` in KiB, as bytes. A value whose byte count does not fit a u32 is refused here
/// (it would otherwise wrap to a small, valid-looking size); the config's own ranges are checked
/// by `init`.
fn parse_chunker(s: &str) -> Result<(u32, u32, u32), String> {
    let v: Vec<u32> = s
        .split(',')
        .map(|x| {
            let kib = x.trim().parse::<u32>().map_err(|e| e.to_string())?;
            kib.checked_mul(1024).ok_or_else(|| {
                format!("{kib} KiB is too large (chunk sizes are at most 16384 KiB)")
            })
        })
        .collect::<Result<_, _>>()?;
    match v[..] {
        [a, b, c] => Ok((a, b, c)),
        _ => Err("expected MIN,AVG,MAX".into()),
    }
}

pub fn run(ctx: &Ctx, a: Args) -> Result<u8> {
    let location = ctx.location()?;
    let mut opts = InitOptions {
        // Cannot overflow: clap bounds the value to 1..=1024.
        pack_size: a.pack_size_mib.map(|m| m * 1024 * 1024),
        compression: a.compression,
        chunker: a.chunker_kib,
        db_chunker: a.db_chunker_kib,
        ..Default::default()
    };
    if let Some(m) = a.kdf_memory_kib {
        opts.kdf_memory_kib = m;
        opts.kdf_iterations = 1;
    }
    let password = ctx.password()?;
    let from = a
        .from_repo
        .as_deref()
        .map(|f| ctx.parse_location(f))
        .transpose()?;
    let id = match &from {
        None => repo::init(&location, password.as_bytes(), &opts)?,
        Some(from) => {
            let from_password = match &a.from_password_file {
                Some(f) => super::read_password_file(f)?,
                None => password.clone(),
            };
            repo::init_sharing_ids(
                &location,
                password.as_bytes(),
                &opts,
                from,
                from_password.as_bytes(),
            )?
        }
    };
    if ctx.json {
        let mut out = serde_json::json!({"id": id.to_hex(), "location": location.to_string()});
        if let Some(from) = &from {
            out["ids_shared_with"] = serde_json::json!(from.to_string());
        }
        if let Some(p) = location.local_path() {
            out["path"] = serde_json::json!(p);
        }
        println!("{out}");
    } else if !ctx.quiet {
        println!("created snap repository {} at {}", id.short(), location);
        if let Some(from) = &from {
            println!(
                "it shares blob ids and chunker parameters with {from}: `snap copy` between them \
                 moves blobs without re-chunking"
            );
        }
        println!("keep the password safe: without it the data cannot be read");
    }
    Ok(0)
}
