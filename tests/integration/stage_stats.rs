//! `--stats`: where a command's time went, stage by stage.

use crate::common::{Env, make_files};

fn stage<'a>(report: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    report["stages"]["stages"]
        .as_array()?
        .iter()
        .find(|r| r["stage"] == name)
}

#[test]
fn backup_restore_and_check_report_their_stages() {
    let env = Env::new(&[]);
    let src = env.path("src");
    make_files(&src.join("a"), 0..40, 300_000);
    make_files(&src.join("b"), 100..300, 3_000);
    let o = env.run(&["--json", "--stats", "backup", src.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let report: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&o.stderr).lines().last().unwrap()).unwrap();
    let read = summary["snapshot"]["summary"]["bytes_read"]
        .as_u64()
        .unwrap();
    assert_eq!(read, 40 * 300_000 + 200 * 3_000);
    // Every byte read was cut and hashed once (trees are hashed by the walkers, untimed).
    for name in ["chunk", "hash"] {
        let row = stage(&report, name).unwrap_or_else(|| panic!("no {name} row in {report}"));
        assert_eq!(row["bytes"].as_u64(), Some(read), "{name}: {row}");
    }
    for name in [
        "walk",
        "read",
        "compress",
        "seal",
        "pack",
        "write packs",
        "index",
    ] {
        let row = stage(&report, name).unwrap_or_else(|| panic!("no {name} row in {report}"));
        assert!(row["seconds"].as_f64().unwrap() > 0.0, "{name}: {row}");
    }
    assert!(report["stages"]["wall_seconds"].as_f64().unwrap() > 0.0);

    // The table a person reads, on stderr; stdout is the restore's own output.
    let target = env.path("restored");
    let o = env.run(&[
        "--stats",
        "restore",
        "latest",
        "--target",
        target.to_str().unwrap(),
    ]);
    assert!(o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    for name in ["fetch packs", "seal", "hash", "output"] {
        assert!(
            err.lines().any(|l| l.starts_with(name)),
            "restore --stats lacks {name}:\n{err}"
        );
    }
    assert!(err.contains("% of one core"), "{err}");

    let o = env.run(&["--json", "--stats", "check", "--read-data"]);
    assert!(o.status.success());
    let report: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&o.stderr).lines().last().unwrap()).unwrap();
    let fetched = stage(&report, "fetch packs").unwrap()["bytes"]
        .as_u64()
        .unwrap();
    let stored: u64 = env
        .pack_files()
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    // Every pack once, and the trees the structure check loads on top (a few KiB here).
    assert!(
        fetched >= stored && fetched < stored + stored / 50,
        "check --read-data fetched {fetched} bytes of {stored} in packs"
    );
}
