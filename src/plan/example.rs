//! `snap config example`: a commented backup.yml covering the seed's three data classes
//! (critical: nightly database dump + binary logs + monthly drill + offsite copy; important:
//! weekly full and daily incremental of code and configuration; normal: monthly full of
//! uploads). A test checks that it validates, and the year-long calendar test runs it.

/// The example, as `snap config example` prints it.
pub const EXAMPLE: &str = include_str!("example.yml");
