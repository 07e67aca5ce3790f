//! `snap forget` through the real binary: about 40 snapshots with injected times (`backup --time`)
//! across the October DST change, then the seed-like policy (7 daily, 4 weekly) checked against a
//! reference computed here from the times, `--dry-run`, the refusal without rules, forget by id
//! (and an ambiguous prefix), and the `pre-restore` safety rule. Afterwards the repository checks
//! clean and every remaining snapshot restores to what its source was.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, FixedOffset, NaiveDate, TimeDelta, TimeZone};

use crate::common::*;

/// The wall-clock time of backup `i`: about one a day from 2024-09-25 for 35 days (some days
/// twice), at irregular hours, with the CEST→CET change on 2024-10-27.
fn time_of(i: i64) -> DateTime<FixedOffset> {
    let day = NaiveDate::from_ymd_opt(2024, 9, 25).unwrap() + TimeDelta::days(i * 35 / 40);
    let (h, m) = ((5 + i * 7) % 24, (i * 13) % 60);
    let local = day.and_hms_opt(h as u32, m as u32, 17).unwrap();
    let dst_end = NaiveDate::from_ymd_opt(2024, 10, 27)
        .unwrap()
        .and_hms_opt(3, 0, 0)
        .unwrap();
    let offset = if local < dst_end { 2 } else { 1 };
    FixedOffset::east_opt(offset * 3600)
        .unwrap()
        .from_local_datetime(&local)
        .unwrap()
}

/// The reasons `--keep-daily 7 --keep-weekly 4` keeps each snapshot for, computed from the
/// times: the newest snapshot of each of the first N distinct local days / ISO weeks.
fn expected(times: &BTreeMap<String, DateTime<FixedOffset>>) -> BTreeMap<String, BTreeSet<String>> {
    let mut newest_first: Vec<(&String, &DateTime<FixedOffset>)> = times.iter().collect();
    newest_first.sort_by(|a, b| b.1.cmp(a.1));
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (rule, n, fmt) in [("daily", 7, "%F"), ("weekly", 4, "%G-W%V")] {
        let mut labels: Vec<String> = Vec::new();
        for (id, t) in &newest_first {
            let l = t.format(fmt).to_string();
            if !labels.contains(&l) && labels.len() < n {
                labels.push(l);
                out.entry(id.to_string())
                    .or_default()
                    .insert(format!("{rule} {}", labels.len()));
            }
        }
    }
    out
}

fn reasons_of(plan: &serde_json::Value, list: &str) -> BTreeMap<String, BTreeSet<String>> {
    plan["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g[list].as_array().unwrap().iter())
        .map(|d| {
            let reasons = d["reasons"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r.as_str().unwrap().to_string())
                .collect();
            (d["id"].as_str().unwrap().to_string(), reasons)
        })
        .collect()
}

#[test]
fn forget_policy_dry_run_refusal_ids_and_safety_copies() {
    let env = Env::new(&[]);
    let src = env.path("src");
    let s = src.to_str().unwrap();
    for f in 0..4u64 {
        write(&src.join(format!("f{f}")), &random_bytes(f, 20_000));
    }
    // Backup i: its counter file, and every 4th a changed data file; its manifest kept.
    let mut times = BTreeMap::new();
    let mut manifests = BTreeMap::new();
    for i in 0..40i64 {
        write(&src.join("counter"), i.to_string().as_bytes());
        if i % 4 == 0 {
            write(
                &src.join(format!("f{}", i % 3)),
                &random_bytes(100 + i as u64, 20_000),
            );
        }
        let t = time_of(i).to_rfc3339();
        let out = env.backup(&[s, "--time", &t]);
        let id = out["id"].as_str().unwrap().to_string();
        assert_eq!(out["snapshot"]["time"].as_str().unwrap()[..19], t[..19]);
        times.insert(id.clone(), time_of(i));
        manifests.insert(id, manifest(&src));
    }
    assert_eq!(times.len(), 40, "40 distinct snapshots");
    let want = expected(&times);
    assert!(want.len() >= 8, "{want:?}");

    // Safety copies of the same host and paths: one a day old, one ten days old.
    let now = chrono::Local::now().fixed_offset();
    let young = env.backup(&[
        s,
        "--tag",
        "pre-restore",
        "--time",
        &(now - TimeDelta::days(1)).to_rfc3339(),
    ])["id"]
        .as_str()
        .unwrap()
        .to_string();
    let old = env.backup(&[
        s,
        "--tag",
        "pre-restore",
        "--time",
        &(now - TimeDelta::days(10)).to_rfc3339(),
    ])["id"]
        .as_str()
        .unwrap()
        .to_string();
    manifests.insert(young.clone(), manifest(&src));
    manifests.insert(old.clone(), manifest(&src));
    let all = snapshot_ids(&env);
    assert_eq!(all.len(), 42);

    // No rule, no id: refused as a usage error, nothing removed.
    for args in [
        &["forget"][..],
        &["forget", "--dry-run"],
        &["forget", "--host", "x"],
    ] {
        let o = env.run(args);
        assert_eq!(code(&o), 2, "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains("--keep"), "{}", stderr(&o));
    }
    let o = env.run(&["forget", "--keep-within", "1x"]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert_eq!(snapshot_ids(&env), all);

    // An ambiguous prefix (42 snapshots, 16 first digits: some digit is shared) and an unknown
    // id are errors that remove nothing.
    let mut first_digits: BTreeMap<char, usize> = BTreeMap::new();
    for id in &all {
        *first_digits.entry(id.chars().next().unwrap()).or_default() += 1;
    }
    let shared = first_digits
        .iter()
        .find(|(_, n)| **n > 1)
        .unwrap()
        .0
        .to_string();
    let o = env.run(&["forget", &shared]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert!(stderr(&o).contains("ambiguous"), "{}", stderr(&o));
    let o = env.run(&["forget", "nothex"]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert_eq!(snapshot_ids(&env), all);

    // Dry run: the plan, nothing removed.
    let policy = ["--keep-daily", "7", "--keep-weekly", "4"];
    let mut dry_args = policy.to_vec();
    dry_args.push("--dry-run");
    let dry = forget_json(&env, &dry_args);
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["removed"], 0);
    assert_eq!(dry["groups"].as_array().unwrap().len(), 1, "{dry}");
    let mut want_keep = want.clone();
    want_keep.insert(young.clone(), ["pre-restore (7 days)".to_string()].into());
    assert_eq!(reasons_of(&dry, "keep"), want_keep);
    let removed: BTreeSet<String> = reasons_of(&dry, "remove").into_keys().collect();
    let want_removed: BTreeSet<String> = all
        .iter()
        .filter(|id| !want_keep.contains_key(*id))
        .cloned()
        .collect();
    assert_eq!(removed, want_removed);
    assert!(removed.contains(&old), "a ten-day-old safety copy goes");
    assert_eq!(snapshot_ids(&env), all);
    let text = env.ok(&[
        "forget",
        "--keep-daily",
        "7",
        "--keep-weekly",
        "4",
        "--dry-run",
    ]);
    assert!(text.contains("daily 1, weekly 1"), "{text}");
    assert!(text.contains("would remove"), "{text}");
    assert!(text.contains("pre-restore (7 days)"), "{text}");

    // The real run removes exactly that, and a second run nothing more.
    let done = forget_json(&env, &policy);
    assert_eq!(done["dry_run"], false);
    assert_eq!(done["removed"], want_removed.len());
    assert_eq!(reasons_of(&done, "keep"), want_keep);
    let left: BTreeSet<String> = want_keep.keys().cloned().collect();
    assert_eq!(snapshot_ids(&env), left);
    assert_eq!(forget_json(&env, &policy)["removed"], 0);

    // Named by id, the young safety copy goes.
    let named = forget_json(&env, &[&young[..10]]);
    assert_eq!(named["removed"], 1);
    assert_eq!(
        reasons_of(&named, "remove")[&young],
        ["named".to_string()].into()
    );
    let left: BTreeSet<String> = want.keys().cloned().collect();
    assert_eq!(snapshot_ids(&env), left);

    // The repository is clean and every remaining snapshot restores to its source.
    env.ok(&["check"]);
    for id in &left {
        let target = env.path(&format!("restore-{}", &id[..8]));
        env.ok(&["restore", id, "--target", target.to_str().unwrap()]);
        let restored = target.join(src.strip_prefix("/").unwrap());
        assert_eq!(manifest(&restored), manifests[id], "snapshot {id}");
    }
}

#[test]
fn forget_takes_the_exclusive_lock_and_dry_run_none() {
    let env = Env::new(&[]);
    let src = env.path("src");
    write(&src.join("f"), b"data");
    let s = src.to_str().unwrap();
    for t in ["2024-05-01T10:00:00+02:00", "2024-05-02T10:00:00+02:00"] {
        env.backup(&[s, "--time", t]);
    }
    // An unreadable lock conflicts with every exclusive taker (it may be anyone's).
    write(&env.repo.join("locks").join("0".repeat(64)), b"not a lock");
    let o = env.run(&["forget", "--keep-last", "1"]);
    assert_eq!(code(&o), 11, "{}", stderr(&o));
    assert_eq!(snapshot_ids(&env).len(), 2);
    let dry = forget_json(&env, &["--keep-last", "1", "--dry-run"]);
    assert_eq!(dry["groups"][0]["remove"].as_array().unwrap().len(), 1);
    env.ok(&["unlock"]);
    assert_eq!(forget_json(&env, &["--keep-last", "1"])["removed"], 1);
    assert_eq!(snapshot_ids(&env).len(), 1);
    assert!(
        std::fs::read_dir(env.repo.join("locks"))
            .unwrap()
            .next()
            .is_none(),
        "forget released its lock"
    );
}

#[test]
fn forget_prune_marks_what_the_forgotten_snapshots_alone_used() {
    let env = Env::new(&["--pack-size-mib", "1"]);
    let src = env.path("src");
    write(&src.join("old.bin"), &random_bytes(41, 3_000_000));
    env.backup(&[src.to_str().unwrap()]);
    std::fs::remove_file(src.join("old.bin")).unwrap();
    write(&src.join("new.bin"), &random_bytes(42, 3_000_000));
    env.backup(&[src.to_str().unwrap()]);
    let out = env.json(&["forget", "--keep-last", "1", "--prune"]);
    assert_eq!(out["forget"]["removed"], 1, "{out:#}");
    // Prune's defaults: the old data's packs are marked now, deleted a grace period later.
    assert!(
        !out["prune"]["plan"]["mark"].as_array().unwrap().is_empty(),
        "{out:#}"
    );
    assert!(
        out["prune"]["deleted"].as_array().unwrap().is_empty(),
        "{out:#}"
    );
    env.ok(&["check", "--read-data"]);
    let t = env.path("target");
    env.ok(&["restore", "latest", "--target", t.to_str().unwrap()]);
    assert_same_tree(&src, &t.join(src.strip_prefix("/").unwrap()));
}
