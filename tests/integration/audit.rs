//! The audit log: every repository-changing action of a scripted session is listed by
//! `snap audit`, oldest first, with the key, host and user that did it and what changed; prune
//! leaves the records alone; check verifies them and names a damaged one.

use std::collections::BTreeSet;

use crate::common::*;

fn audit_files(env: &Env) -> BTreeSet<String> {
    walk_files(&env.repo.join("audit"))
        .iter()
        .map(|p| env.rel(p))
        .collect()
}

fn strs(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

#[test]
fn a_scripted_session_is_audited_and_survives_prune() {
    let env = Env::new(&[]);
    let first_key = env
        .only_file("keys")
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let src = env.path("src");
    make_files(&src, 0..4, 300 * 1024);
    let s1 = env.backup_id(&src);
    make_files(&src, 10..14, 300 * 1024);
    let s2 = env.backup_id(&src);
    env.ok(&["forget", &s1]);
    let before_prune = audit_files(&env);
    let pruned = env.prune(&["--grace", "0"]);
    assert!(
        !pruned["deleted"].as_array().unwrap().is_empty(),
        "{pruned}"
    );
    let after_prune = audit_files(&env);
    assert!(
        before_prune.is_subset(&after_prune),
        "prune removed audit records: {before_prune:?} vs {after_prune:?}"
    );
    let add = env
        .cmd(&["--json", "key", "add", "--kdf-memory-kib", "19456"])
        .env("SNAP_NEW_PASSWORD", "second")
        .output()
        .unwrap();
    assert!(add.status.success(), "{}", stderr(&add));
    let second_key = serde_json::from_slice::<serde_json::Value>(&add.stdout).unwrap()["key"]
        .as_str()
        .unwrap()
        .to_string();
    // Removed by the second key: the record names the key that did it.
    let o = env
        .cmd(&["key", "remove", &first_key[..12]])
        .env("SNAP_PASSWORD", "second")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    // A second prune (nothing left to delete) still keeps every record.
    let all = audit_files(&env);
    let o = env
        .cmd(&["prune", "--grace", "0"])
        .env("SNAP_PASSWORD", "second")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(all.is_subset(&audit_files(&env)));

    let o = env
        .cmd(&["--json", "audit"])
        .env("SNAP_PASSWORD", "second")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let log: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let recs = log.as_array().unwrap();
    let actions: Vec<&str> = recs.iter().map(|r| r["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions,
        [
            "init",
            "backup",
            "backup",
            "forget",
            "prune",
            "key-add",
            "key-remove"
        ],
        "{log:#}"
    );
    let (host, user) = (snap::hostname(), snap::username());
    let mut pids = BTreeSet::new();
    for (i, r) in recs.iter().enumerate() {
        // The JSON shape: these keys, these types.
        for k in ["id", "time", "action", "key", "host", "user"] {
            assert!(r[k].is_string(), "record {i}: {k} in {r}");
        }
        assert!(r["pid"].is_u64() && r["ok"] == true, "record {i}: {r}");
        assert!(r["summary"].is_object(), "record {i}: {r}");
        assert!(
            chrono::DateTime::parse_from_rfc3339(r["time"].as_str().unwrap()).is_ok(),
            "{r}"
        );
        assert_eq!(r["id"].as_str().unwrap().len(), 64);
        assert!(after_prune.contains(&format!("audit/{}", r["id"].as_str().unwrap())) || i >= 5);
        assert_eq!(
            (r["host"].as_str().unwrap(), r["user"].as_str().unwrap()),
            (host.as_str(), user.as_str())
        );
        let want_key = if actions[i] == "key-remove" {
            &second_key
        } else {
            &first_key
        };
        assert_eq!(r["key"].as_str().unwrap(), want_key, "record {i}: {r}");
        pids.insert(r["pid"].as_u64().unwrap());
    }
    assert_eq!(pids.len(), recs.len(), "one process per action: {log:#}");
    assert_eq!(
        strs(&recs[0]["summary"]["keys_added"]),
        vec![first_key.clone()]
    );
    assert_eq!(
        strs(&recs[1]["summary"]["snapshots_added"]),
        vec![s1.clone()]
    );
    assert_eq!(
        strs(&recs[2]["summary"]["snapshots_added"]),
        vec![s2.clone()]
    );
    assert!(recs[1]["summary"]["packs_added"].as_u64().unwrap() > 0);
    assert!(recs[1]["summary"]["bytes_added"].as_u64().unwrap() > 0);
    assert_eq!(
        strs(&recs[3]["summary"]["snapshots_removed"]),
        vec![s1.clone()]
    );
    assert_eq!(
        recs[4]["summary"]["packs_deleted"].as_u64(),
        Some(pruned["deleted"].as_array().unwrap().len() as u64),
        "{}",
        recs[4]
    );
    assert_eq!(recs[4]["summary"]["bytes_deleted"], pruned["bytes_freed"]);
    assert_eq!(
        strs(&recs[5]["summary"]["keys_added"]),
        vec![second_key.clone()]
    );
    assert_eq!(
        strs(&recs[6]["summary"]["keys_removed"]),
        vec![first_key.clone()]
    );

    // --since: a future moment lists nothing, an age lists everything; text output names each.
    let since = |when: &str| {
        let o = env
            .cmd(&["--json", "audit", "--since", when])
            .env("SNAP_PASSWORD", "second")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        serde_json::from_slice::<serde_json::Value>(&o.stdout)
            .unwrap()
            .as_array()
            .unwrap()
            .len()
    };
    assert_eq!(since("2999-01-01"), 0);
    assert_eq!(since("1h"), recs.len());
    let o = env
        .cmd(&["audit"])
        .env("SNAP_PASSWORD", "second")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(text.lines().count(), recs.len(), "{text}");
    assert!(
        text.contains("key-remove") && text.contains(&second_key[..8]),
        "{text}"
    );

    // check opens every record; a damaged one is a problem naming it, and audit skips it.
    let env2 = |args: &[&str]| {
        env.cmd(args)
            .env("SNAP_PASSWORD", "second")
            .output()
            .unwrap()
    };
    let o = env2(&["--json", "check"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let victim = env
        .repo
        .join(format!("audit/{}", recs[3]["id"].as_str().unwrap()));
    modify(&victim, |b| {
        let n = b.len();
        b[n - 3] ^= 1;
    });
    let o = env2(&["--json", "check"]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(problems(&report, &env.rel(&victim)).len(), 1, "{report:#}");
    let o = env2(&["--json", "audit"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stderr(&o).contains(&env.rel(&victim)), "{}", stderr(&o));
    let left: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(left.as_array().unwrap().len(), recs.len() - 1);
}

/// An append-only session's backup is audited under its own key; its refused forget is not an
/// action and writes no record.
#[test]
fn append_only_sessions_are_audited_under_their_key() {
    let env = Env::new(&[]);
    let add = env
        .cmd(&[
            "--json",
            "key",
            "add",
            "--append-only",
            "--kdf-memory-kib",
            "19456",
        ])
        .env("SNAP_NEW_PASSWORD", "ao")
        .output()
        .unwrap();
    assert!(add.status.success(), "{}", stderr(&add));
    let ao_key = serde_json::from_slice::<serde_json::Value>(&add.stdout).unwrap()["key"]
        .as_str()
        .unwrap()
        .to_string();
    let src = env.path("src");
    make_files(&src, 0..2, 10_000);
    let o = env
        .cmd(&["-q", "backup", src.to_str().unwrap()])
        .env("SNAP_PASSWORD", "ao")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let id = env.snapshot_ids().pop().unwrap();
    let o = env
        .cmd(&["forget", &id])
        .env("SNAP_PASSWORD", "ao")
        .output()
        .unwrap();
    assert_eq!(code(&o), 17, "{}", stderr(&o));
    let log = env.json(&["audit"]);
    let recs = log.as_array().unwrap();
    let actions: Vec<&str> = recs.iter().map(|r| r["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["init", "key-add", "backup"], "{log:#}");
    assert_eq!(recs[1]["summary"]["note"], "append-only key");
    assert_eq!(recs[2]["key"].as_str().unwrap(), ao_key);
}
