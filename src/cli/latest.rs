//! `--host` and `--tag` for commands that name a snapshot: they narrow what `latest` means, as in
//! restic. An explicit id or prefix is taken as given.

use snap::snapshot::SnapshotFilter;

#[derive(clap::Args)]
pub struct LatestArgs {
    /// With `latest`: the newest snapshot of this host
    #[arg(long)]
    host: Option<String>,
    /// With `latest`: the newest snapshot with this tag (repeatable: all must match; `latest`
    /// never means a `pre-restore` safety copy unless this names that tag)
    #[arg(long)]
    tag: Vec<String>,
}

impl LatestArgs {
    pub fn filter(&self) -> SnapshotFilter {
        SnapshotFilter {
            host: self.host.clone(),
            tags: self.tag.clone(),
            with_database: false,
        }
    }

    /// For commands that need the snapshot's database dump.
    pub fn database_filter(&self) -> SnapshotFilter {
        SnapshotFilter {
            with_database: true,
            ..self.filter()
        }
    }
}
