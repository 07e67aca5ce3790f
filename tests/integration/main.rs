//! Integration tests: the real `snap` binary on real files, compared by an independent manifest.
//! One test binary (not one per file) so RocksDB is linked once.

mod common;

mod all_kinds;
mod append_only;
mod audit;
mod backup_kinds;
mod check_subset;
mod confinement;
mod copy;
mod corruption;
mod crash;
mod diff;
mod errors;
mod fault_proxy;
mod forget;
mod formats;
mod golden;
mod index_cache;
mod keys;
mod locks;
mod modes;
mod mysql;
mod mysql_binlog;
mod mysql_cli;
mod mysql_common;
mod mysql_hardening;
mod mysql_pitr;
mod parallel_walk;
// backup.yml and snap run (issue 14)
mod plan_common;
mod plan_config;
mod plan_report;
mod plan_run;
mod plan_year;
mod prune;
mod remote;
mod remote_faults;
mod remote_restore;
mod servers;
mod stage_stats;
mod untrusted;
