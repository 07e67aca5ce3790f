//! Full, incremental and differential backups: what each reads, what each records.

use std::fs;

use crate::common::*;

fn summary(v: &serde_json::Value) -> &serde_json::Value {
    &v["snapshot"]["summary"]
}

fn n(v: &serde_json::Value, k: &str) -> u64 {
    summary(v)[k]
        .as_u64()
        .unwrap_or_else(|| panic!("no {k} in {v}"))
}

#[test]
fn incremental_differential_and_full_read_what_they_should() {
    let env = Env::new(&[]);
    let src = env.path("src");
    for i in 0..20u64 {
        write(
            &src.join(format!("d{}/f{i}", i % 3)),
            &random_bytes(i, 50_000 + i as usize * 1000),
        );
    }
    let s = src.to_str().unwrap();
    let first = env.backup(&[s, "--tag", "t1"]);
    // No parent yet: an incremental without a parent reads everything.
    assert_eq!(n(&first, "files_new"), 20);
    assert_eq!(first["snapshot"]["parent"], serde_json::Value::Null);
    let full = env.backup(&[s, "--full"]);
    assert_eq!(full["snapshot"]["kind"], "full");
    assert_eq!(n(&full, "files_new"), 20, "--full reads every file");
    assert_eq!(n(&full, "bytes_read"), n(&full, "bytes_total"));
    // No data blob is new (each file is ≥ 50 kB); only trees may be, when another test created a
    // directory beside ours and so changed a directory time along the source path.
    assert!(
        n(&full, "bytes_added_raw") < 10_000,
        "everything deduplicates: {full}"
    );

    // Change one file: incremental reads only it.
    std::thread::sleep(std::time::Duration::from_millis(20));
    write(&src.join("d0/f0"), &random_bytes(100, 60_000));
    let inc1 = env.backup(&[s]);
    assert_eq!(inc1["snapshot"]["kind"], "incremental");
    assert_eq!(
        (n(&inc1, "files_changed"), n(&inc1, "files_unmodified")),
        (1, 19)
    );
    assert_eq!(n(&inc1, "bytes_read"), 60_000);
    assert_eq!(inc1["snapshot"]["parent"], full["id"]);

    // Change another: incremental reads one more; differential (vs the full) reads both.
    write(&src.join("d1/f1"), &random_bytes(101, 70_000));
    let inc2 = env.backup(&[s]);
    assert_eq!(n(&inc2, "files_changed"), 1);
    assert_eq!(inc2["snapshot"]["parent"], inc1["id"]);
    let diff = env.backup(&[s, "--differential"]);
    assert_eq!(diff["snapshot"]["kind"], "differential");
    assert_eq!(diff["snapshot"]["parent"], full["id"]);
    assert_eq!(
        (n(&diff, "files_changed"), n(&diff, "files_unmodified")),
        (2, 18)
    );
    assert_eq!(n(&diff, "bytes_read"), 130_000);

    // A touched file (same content, new mtime) is re-read but adds nothing.
    let t = filetime::FileTime::from_unix_time(1_650_000_000, 0);
    filetime::set_file_mtime(src.join("d2/f2"), t).unwrap();
    let inc3 = env.backup(&[s]);
    assert_eq!(n(&inc3, "files_changed"), 1);
    assert!(n(&inc3, "bytes_added") < 8192, "only trees are new: {inc3}");

    // Every snapshot restores to what the source was at its time; the latest to the source now.
    let target = env.path("restore");
    env.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_same_tree(&src, &target.join(src.strip_prefix("/").unwrap()));

    // Listing and filtering.
    let list = env.json(&["snapshots"]);
    assert_eq!(list.as_array().unwrap().len(), 6);
    let tagged = env.json(&["snapshots", "--tag", "t1"]);
    assert_eq!(tagged.as_array().unwrap().len(), 1);
    let other_host = env.json(&["snapshots", "--host", "no-such-host"]);
    assert_eq!(other_host.as_array().unwrap().len(), 0);
    // A unique id prefix names a snapshot.
    let id = first["id"].as_str().unwrap();
    let ls = env.ok(&["ls", &id[..8], s]);
    assert!(ls.contains("/d0"), "{ls}");

    // A different host does not inherit the parent.
    let other = env.backup(&[s, "--host", "elsewhere"]);
    assert_eq!(other["snapshot"]["parent"], serde_json::Value::Null);
    assert_eq!(n(&other, "files_new"), 20);
    let _ = fs::remove_dir_all(&target);
}

#[test]
fn excludes_and_relative_paths() {
    let env = Env::new(&[]);
    let src = env.path("src");
    write(&src.join("keep.txt"), b"keep");
    write(&src.join("skip.tmp"), b"skip");
    write(&src.join("cache/big"), b"cache");
    write(&src.join("sub/also.tmp"), b"skip");
    let exf = env.path("excludes");
    fs::write(&exf, "# comment\ncache\n").unwrap();
    let out = env
        .cmd(&[
            "--json",
            "backup",
            ".",
            "--exclude",
            "*.tmp",
            "--exclude-file",
            exf.to_str().unwrap(),
        ])
        .current_dir(&src)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // `backup .` stores the directory's contents at the root of the snapshot, as restic does.
    let ls = env.ok(&["ls", "--recursive", "latest"]);
    let names: Vec<&str> = ls.lines().collect();
    assert_eq!(names, vec!["/keep.txt", "/sub"], "{ls}");
}

/// The seed's data classes pick files by pattern: includes take matching files anywhere, a
/// directory matching an include whole, and leave out directories in which nothing was taken;
/// excludes win. Checked against a list written from those rules, then a restore against the
/// source's bytes, then an incremental run that adds a matching and a non-matching file.
#[test]
fn includes_pick_files_by_pattern() {
    let env = Env::new(&[]);
    let app = env.path("app");
    for f in [
        "main.py",
        ".env",
        "web/App.vue",
        "web/x.js",
        "web/logo.png",
        "conf/site.conf",
        "notes.txt",
        "docs/deep/readme.txt",
        "upload/a.jpg",
        "upload/sub/b.bin",
        "node_modules/lib.js",
    ] {
        write(&app.join(f), f.as_bytes());
    }
    fs::create_dir_all(app.join("empty")).unwrap();
    fs::create_dir_all(app.join("upload/empty")).unwrap();
    let upload = format!("{}/upload", app.display());
    let args = [
        "backup",
        ".",
        "--include",
        "*.py",
        "--include",
        "*.vue",
        "--include",
        "*.js",
        "--include",
        "*.env",
        "--include",
        "*.conf",
        "--include",
        &upload,
        "--exclude",
        "**/node_modules",
    ];
    let out = env.cmd(&args).current_dir(&app).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let ls = env.ok(&["ls", "--recursive", "latest"]);
    let want = [
        "/.env",
        "/conf",
        "/conf/site.conf",
        "/main.py",
        "/upload",
        "/upload/a.jpg",
        "/upload/empty",
        "/upload/sub",
        "/upload/sub/b.bin",
        "/web",
        "/web/App.vue",
        "/web/x.js",
    ];
    assert_eq!(ls.lines().collect::<Vec<_>>(), want, "{ls}");
    let target = env.path("out");
    env.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    for f in want {
        let (got, src) = (target.join(&f[1..]), app.join(&f[1..]));
        if src.is_file() {
            assert_eq!(fs::read(&got).unwrap(), fs::read(&src).unwrap(), "{f}");
        } else {
            assert!(got.is_dir(), "{f}");
        }
    }
    assert!(!target.join("docs").exists() && !target.join("notes.txt").exists());
    // the next run (incremental, with the same includes) takes the new .py, not the new .txt
    write(&app.join("docs/tool.py"), b"print()");
    write(&app.join("web/more.txt"), b"no");
    let out = env.cmd(&args).current_dir(&app).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let ls = env.ok(&["ls", "--recursive", "latest"]);
    assert!(ls.lines().any(|l| l == "/docs/tool.py"), "{ls}");
    assert!(
        !ls.lines()
            .any(|l| l == "/docs/deep" || l == "/web/more.txt"),
        "{ls}"
    );
    // a bad pattern is named, with the usage exit code
    let o = env.run(&["backup", app.to_str().unwrap(), "--include", "a["]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(stderr(&o).contains("a["), "{}", stderr(&o));
}

#[test]
fn latest_follows_host_and_tag_and_skips_safety_copies() {
    let env = Env::new(&[]);
    let src = env.path("src");
    let f = src.join("f");
    let s = src.to_str().unwrap();
    let fp = f.to_str().unwrap();
    write(&f, b"one");
    env.backup(&[s, "--host", "h1", "--tag", "nightly"]);
    write(&f, b"two!");
    env.backup(&[s, "--host", "h2"]);
    // What `snap mysql restore` saves before overwriting carries this tag.
    write(&f, b"three");
    env.backup(&[s, "--host", "h1", "--tag", "pre-restore"]);

    assert_eq!(
        env.ok(&["cat", "latest", fp]),
        "two!",
        "a safety copy is not `latest`"
    );
    assert_eq!(env.ok(&["cat", "latest", fp, "--host", "h1"]), "one");
    assert_eq!(
        env.ok(&["cat", "latest", fp, "--tag", "pre-restore"]),
        "three"
    );
    let target = env.path("out");
    let t = target.to_str().unwrap();
    env.ok(&["restore", "latest", "--target", t, "--tag", "nightly"]);
    assert_eq!(
        fs::read(target.join(f.strip_prefix("/").unwrap())).unwrap(),
        b"one"
    );

    let o = env.run(&["cat", "latest", fp, "--host", "h2", "--tag", "nightly"]);
    assert_eq!(code(&o), 1);
    assert!(
        stderr(&o).contains("latest (host h2, tag nightly)"),
        "{}",
        stderr(&o)
    );
    // Only file snapshots here: a database restore has no `latest` to take, and says so before
    // it connects anywhere.
    let o = env.run(&[
        "mysql",
        "restore",
        "latest",
        "--to",
        "mysql://root@127.0.0.1:9",
    ]);
    assert_eq!(code(&o), 1);
    assert!(
        stderr(&o).contains("latest (with a database dump)"),
        "{}",
        stderr(&o)
    );
}
