//! `snap init`: create a repository.

use anyhow::Result;
use snap::repo::{self, InitOptions};

use super::Ctx;

#[derive(clap::Args)]
pub struct Args {
    /// Target pack size in MiB
    #[arg(long)]
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
    /// argon2id memory in KiB for the key file (lower only for tests)
    #[arg(long, hide = true)]
    kdf_memory_kib: Option<u32>,
}

fn parse_chunker(s: &str) -> Result<(u32, u32, u32), String> {
    let v: Vec<u32> = s
        .split(',')
        .map(|x| x.trim().parse::<u32>().map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    match v[..] {
        [a, b, c] => Ok((a * 1024, b * 1024, c * 1024)),
        _ => Err("expected MIN,AVG,MAX".into()),
    }
}

pub fn run(ctx: &Ctx, a: Args) -> Result<u8> {
    let path = ctx.repo_path()?;
    let mut opts = InitOptions {
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
    let id = repo::init(&path, ctx.password()?.as_bytes(), &opts)?;
    if ctx.json {
        println!("{}", serde_json::json!({"id": id.to_hex(), "path": path}));
    } else if !ctx.quiet {
        println!(
            "created snap repository {} at {}",
            id.short(),
            path.display()
        );
        println!("keep the password safe: without it the data cannot be read");
    }
    Ok(0)
}
