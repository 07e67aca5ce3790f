//! Several passwords open one repository; the last key and the key in use cannot be removed;
//! `passwd` never leaves a moment without a working key.

use crate::common::*;

#[test]
fn add_remove_and_change_passwords() {
    let env = Env::new(&[]);
    let src = env.path("src");
    write(&src.join("f"), b"data");
    env.backup(&[src.to_str().unwrap()]);
    let add = env
        .cmd(&["--json", "key", "add", "--kdf-memory-kib", "19456"])
        .env("SNAP_NEW_PASSWORD", "second")
        .output()
        .unwrap();
    assert!(
        add.status.success(),
        "{}",
        String::from_utf8_lossy(&add.stderr)
    );
    let added: serde_json::Value = serde_json::from_slice(&add.stdout).unwrap();
    let second_id = added["key"].as_str().unwrap().to_string();
    // Both passwords open it and see the same snapshot.
    let with_second = env
        .cmd(&["--json", "snapshots"])
        .env("SNAP_PASSWORD", "second")
        .output()
        .unwrap();
    assert!(with_second.status.success());
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&with_second.stdout)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let list = env.json(&["key", "list"]);
    assert_eq!(list.as_array().unwrap().len(), 2);
    // The key in use cannot be removed; another one can.
    let first_id = list
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["current"] == true)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let o = env.run(&["key", "remove", &first_id[..10]]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "a refused request is a usage error"
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("key in use"));
    let o = env
        .cmd(&["key", "remove", &first_id[..10]])
        .env("SNAP_PASSWORD", "second")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        env.run(&["snapshots"]).status.code(),
        Some(12),
        "the removed password no longer opens it"
    );
    // The last key cannot be removed.
    let o = env
        .cmd(&["key", "remove", &second_id[..10]])
        .env("SNAP_PASSWORD", "second")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    // passwd: the new password works, the old does not.
    let o = env
        .cmd(&["key", "passwd", "--kdf-memory-kib", "19456"])
        .env("SNAP_PASSWORD", "second")
        .env("SNAP_NEW_PASSWORD", "third")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        env.cmd(&["snapshots"])
            .env("SNAP_PASSWORD", "second")
            .output()
            .unwrap()
            .status
            .code(),
        Some(12)
    );
    assert!(
        env.cmd(&["snapshots"])
            .env("SNAP_PASSWORD", "third")
            .output()
            .unwrap()
            .status
            .success()
    );
}

#[test]
fn sigkill_during_passwd_never_loses_access() {
    let env = Env::new(&[]);
    let mut current = PASSWORD.to_string();
    for k in 0..12u64 {
        let new = format!("pw-{k}");
        // The real argon2id cost here, so the kill can land inside the key derivations too.
        let mut child = env
            .cmd(&["--quiet", "key", "passwd"])
            .env("SNAP_PASSWORD", &current)
            .env("SNAP_NEW_PASSWORD", &new)
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(k * 60));
        unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        let _ = child.wait();
        let opens = |pw: &str| {
            env.cmd(&["snapshots"])
                .env("SNAP_PASSWORD", pw)
                .output()
                .unwrap()
                .status
                .success()
        };
        let (old_ok, new_ok) = (opens(&current), opens(&new));
        assert!(
            old_ok || new_ok,
            "kill after {}ms: neither password opens the repository",
            k * 60
        );
        if new_ok {
            current = new;
        }
    }
}
