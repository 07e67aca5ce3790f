//! `check --read-data-subset`: `P%` reads the least recently verified packs first, so four 25%
//! runs read every pack; `n/t` groups partition the packs; bad specs are usage errors (exit 2);
//! damage in a pack is found by the run that reads it and stays first in line until repaired.

use std::collections::BTreeSet;

use crate::common::*;

fn read_set(r: &serde_json::Value) -> BTreeSet<String> {
    r["packs_read"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect()
}

/// A repository of about a dozen 1 MiB packs.
fn many_packs() -> (Env, BTreeSet<String>) {
    let env = Env::new(&["--pack-size-mib", "1", "--chunker-kib", "64,128,256"]);
    let src = env.path("src");
    for i in 0..6 {
        write(&src.join(format!("f{i}")), &random_bytes(10 + i, 1_500_000));
    }
    env.backup(&[src.to_str().unwrap()]);
    let all: BTreeSet<String> = env.pack_files().iter().map(|p| env.rel(p)).collect();
    assert!(all.len() >= 8, "{all:?}");
    (env, all)
}

#[test]
fn percent_subsets_cover_the_repository_least_recently_verified_first() {
    let (env, all) = many_packs();
    let per_run = all.len().div_ceil(4);
    let mut covered = BTreeSet::new();
    for run in 0..4 {
        let (code, r, err) = env.check(&["--read-data-subset", "25%"]);
        assert_eq!(code, 0, "{err}");
        let read = read_set(&r);
        assert_eq!(read.len(), per_run, "run {run}: {read:?}");
        // Until everything was read once, no run reads a pack again.
        if covered.len() + per_run <= all.len() {
            assert!(covered.is_disjoint(&read), "run {run} re-read {read:?}");
        }
        covered.extend(read);
    }
    assert_eq!(covered, all);
    // The fifth run starts over with the packs verified longest ago (the first run's).
    let (_, r, _) = env.check(&["--read-data-subset", "25%"]);
    assert_eq!(read_set(&r).len(), per_run);
    // `--read-data` reads all and records all; losing the record loses only the order.
    let (code, r, _) = env.check(&["--read-data"]);
    assert_eq!((code, read_set(&r)), (0, all.clone()));
    let verified = walkdir::WalkDir::new(&env.cache)
        .into_iter()
        .filter_map(|e| e.ok())
        .find(|e| e.file_name() == "verified")
        .unwrap()
        .into_path();
    let text = std::fs::read_to_string(&verified).unwrap();
    assert_eq!(text.lines().count(), all.len() + 1, "{text}");
    std::fs::write(&verified, "garbage\n").unwrap();
    let (code, r, _) = env.check(&["--read-data-subset", "10%"]);
    assert_eq!((code, read_set(&r).len()), (0, all.len().div_ceil(10)));
}

#[test]
fn group_subsets_partition_the_packs_and_bad_specs_are_usage_errors() {
    let (env, all) = many_packs();
    let mut union = BTreeSet::new();
    for n in 1..=3 {
        let (code, r, err) = env.check(&["--read-data-subset", &format!("{n}/3")]);
        assert_eq!(code, 0, "{err}");
        let read = read_set(&r);
        assert!(union.is_disjoint(&read), "{n}/3 overlaps: {read:?}");
        union.extend(read);
    }
    assert_eq!(union, all);
    for bad in ["0%", "150%", "4/3", "0/3", "half"] {
        let o = env.run(&["check", "--read-data-subset", bad]);
        assert_eq!(code(&o), 2, "{bad}: {}", stderr(&o));
        assert!(stderr(&o).contains("read-data-subset"), "{}", stderr(&o));
    }
    let o = env.run(&["check", "--read-data", "--read-data-subset", "10%"]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
}

#[test]
fn a_damaged_pack_is_found_by_the_subset_that_reads_it_and_stays_first() {
    let (env, all) = many_packs();
    // A data pack: damage in a tree pack is found by the structure pass whatever the subset.
    let victim = largest_file(env.pack_files());
    let rel = env.rel(&victim);
    modify(&victim, |b| {
        let m = b.len() / 2;
        b[m] ^= 0x20;
    });
    let mut found = 0;
    for _ in 0..4 {
        let (code, r, err) = env.check(&["--read-data-subset", "25%"]);
        assert!(
            found == 0 || read_set(&r).contains(&rel),
            "damage read first again"
        );
        if read_set(&r).contains(&rel) {
            assert_eq!(code, 1, "{err}");
            assert!(!problems(&r, &rel).is_empty(), "{r:#}");
            assert!(!affected(&problems(&r, &rel)).is_empty(), "{r:#}");
            found += 1;
        } else {
            assert_eq!(code, 0, "{err}");
        }
    }
    // Found once, then marked damaged, so read by every later run.
    assert!(found >= 1, "never found among {} packs", all.len());
    let (code, r, _) = env.check(&["--read-data-subset", "1%"]);
    assert_eq!(code, 1);
    assert_eq!(read_set(&r), BTreeSet::from([rel]));
}
