//! Policy: what the operator decides rather than what the data dictates. Today that is retention
//! ([`retention`]: which snapshots `snap forget` keeps, as pure logic over times and tags, testable
//! without a repository), what a kept snapshot needs ([`needs`]: an increment its full, a full
//! its binary-log archive) and the forget operation built on it ([`forget`]: select, plan, remove
//! snapshot files under the lock). Backup schedules and notifications (backup.yml) join here.

pub mod needs;
pub mod retention;

#[cfg(feature = "rocksdb")]
pub mod forget;
