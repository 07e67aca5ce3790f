//! Sources: where backup data comes from. `files` reads file system entries; the MySQL dump and
//! binlog sources arrive in later steps and feed the same chunker and blob store.

pub mod files;
pub mod readahead;
