//! MySQL/MariaDB logical backup, independent of the repository: a consistent dump of a server
//! into named byte streams, a restore from such streams, and the verification that ties them.
//!
//! A dump is a set of streams (one per table's rows, one per table's schema, one per database's
//! other objects, a manifest), written through the [`StreamSink`] trait so the caller decides where
//! they go: the archiver feeds each one to the chunker, tests and debugging use a [`DirSink`]. One
//! stream per table is what lets an unchanged table deduplicate day to day and a single table
//! restore alone. The layout is documented in `repo-format.md`, "MySQL dump streams".
//!
//! - [`conn`]: where the server is and how to log in; typed connect errors.
//! - [`dump`]: the consistent dump (mydumper's method: a short global lock, N worker connections
//!   sharing one consistent snapshot).
//! - [`restore`]: parallel load into a server, then verification against the manifest.
//! - [`rows`]: the deterministic row encoding and its checksum, shared by dump and verification.
//! - [`fingerprint`]: a server-side description of databases for tests to compare.

pub mod binlog;
pub mod conn;
pub mod dump;
pub mod fingerprint;
pub mod lock;
pub mod manifest;
pub mod restore;
pub mod rows;
pub mod schema;
pub mod script;
pub mod streams;
mod workers;

pub use conn::{Flavor, MysqlTarget, ServerInfo};
pub use dump::{DumpOptions, dump};
pub use manifest::DumpManifest;
pub use restore::{RestoreOptions, RestoreReport, restore};
pub use streams::{DirSink, DirSource, StreamSink, StreamSource, StreamWriter};
