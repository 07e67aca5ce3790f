//! `snap status`: for the repository given by `-r` and each `--also URL`, its backups by host and
//! paths with the age of the newest, and whether each backup has an offsite copy (3-2-1).

use std::path::PathBuf;

use anyhow::Result;
use snap::status::{self, Target};

use super::Ctx;

#[derive(clap::Args)]
pub struct Args {
    /// A further repository to report on (repeatable), e.g. the offsite copy a backup's
    /// --copy-to writes
    #[arg(long, value_name = "URL")]
    also: Vec<String>,
    /// Password file for the --also repositories (default: the same password as -r's)
    #[arg(long, value_name = "FILE")]
    also_password_file: Option<PathBuf>,
}

/// Exit 0 when every repository opened and every backup has an offsite copy; 1 otherwise, so a
/// monitoring job can alert on it.
pub fn run(ctx: &Ctx, a: Args) -> Result<u8> {
    let primary = ctx.location()?;
    let also = a
        .also
        .iter()
        .map(|s| ctx.parse_location(s))
        .collect::<Result<Vec<_>>>()?;
    let password = ctx.password()?;
    let also_password = match &a.also_password_file {
        Some(f) => super::read_password_file(f)?,
        None => password.clone(),
    };
    let mut targets = vec![Target {
        location: primary,
        password: password.as_bytes(),
    }];
    targets.extend(also.into_iter().map(|location| Target {
        location,
        password: also_password.as_bytes(),
    }));
    let st = status::status(&targets, ctx.cache_dir());
    let healthy = st.repositories.iter().all(|r| r.error.is_none())
        && !st.coverage.is_empty()
        && st.coverage.iter().all(|c| c.offsite);
    if ctx.json {
        println!("{}", serde_json::to_string_pretty(&st)?);
        return Ok(if healthy { 0 } else { 1 });
    }
    for r in &st.repositories {
        println!(
            "{} ({}){}",
            r.location,
            if r.offsite { "offsite" } else { "local" },
            r.id.as_ref()
                .map(|i| format!(", id {i}"))
                .unwrap_or_default()
        );
        if let Some(e) = &r.error {
            println!("  cannot read it: {e}");
            continue;
        }
        if r.groups.is_empty() {
            println!("  no snapshots");
        }
        for g in &r.groups {
            println!(
                "  {}  {}: {} snapshot(s), newest {} ({})",
                g.host,
                g.paths.join(" "),
                g.snapshots,
                g.newest.short(),
                age(g.newest_age_secs)
            );
        }
    }
    println!("3-2-1:");
    for c in &st.coverage {
        println!(
            "  {}  {}: {} repositor{}, {}",
            c.host,
            c.paths.join(" "),
            c.copies,
            if c.copies == 1 { "y" } else { "ies" },
            if c.offsite {
                format!("offsite copy {}", age(c.newest_offsite_age_secs))
            } else {
                "NO OFFSITE COPY (add one: `snap backup ... --copy-to s3://BUCKET/PREFIX`, or \
                 `snap -r s3://... copy --from-repo ...`)"
                    .to_string()
            }
        );
    }
    if st.coverage.is_empty() {
        println!("  no snapshots in any repository");
    }
    Ok(if healthy { 0 } else { 1 })
}

/// `3h 5m ago` style, or `age unknown`.
fn age(secs: Option<i64>) -> String {
    let Some(s) = secs else {
        return "age unknown".into();
    };
    if s < 0 {
        return "in the future (a clock is wrong)".into();
    }
    let (d, h, m) = (s / 86400, s % 86400 / 3600, s % 3600 / 60);
    let text = match (d, h) {
        (0, 0) => format!("{m}m"),
        (0, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    };
    format!("{text} ago")
}
