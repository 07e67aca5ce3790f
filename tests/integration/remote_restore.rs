//! Restores from a remote repository, which go pack by pack (`restorer::packwise`) rather than in
//! walk order as from a disk: every kind of entry arrives identical, a blob shared by files
//! reaches all of them, holes stay holes, and a damaged pack fails the restore without leaving a
//! file that claims content it has not got.

use std::fs;

use crate::common::*;
use crate::servers;

/// Damages the largest object under `prefix` in `bucket` (one byte in its middle flipped) through
/// boto3 (moto's own dependency), and returns its key.
fn damage_largest(
    s3: &servers::S3Server,
    vars: &[(String, String)],
    bucket: &str,
    prefix: &str,
) -> String {
    let script = r#"
import boto3, sys
endpoint, bucket, prefix = sys.argv[1:4]
s3 = boto3.client("s3", endpoint_url=endpoint)
objects = s3.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]
key = max(objects, key=lambda o: o["Size"])["Key"]
body = bytearray(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
body[len(body) // 2] ^= 0xFF
s3.put_object(Bucket=bucket, Key=key, Body=bytes(body))
print(key)
"#;
    let o = std::process::Command::new("python3")
        .args(["-c", script, &s3.endpoint, bucket, prefix])
        .envs(vars.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap().trim().to_string()
}

#[test]
fn every_kind_round_trips_identically_through_s3() {
    let s3 = servers::moto();
    let bucket = s3.bucket("allkinds");
    let env = s3.env(&bucket, "kinds");
    env.ok(&["init", "--kdf-memory-kib", "19456"]);
    // The manifest comparison covers contents, modes, owners, times, links and xattrs, and the
    // two files that share every blob (dup-a, dup-b) both filled.
    crate::all_kinds::round_trip_every_kind(&env);
}

#[test]
fn a_damaged_remote_pack_fails_the_restore_and_leaves_no_partial_file() {
    let s3 = servers::moto();
    let bucket = s3.bucket("damaged");
    let env = s3.env(&bucket, "damaged");
    env.ok(&["init", "--kdf-memory-kib", "19456", "--pack-size-mib", "1"]);
    let src = env.path("src");
    // Six files of several blobs each, fifty of one.
    make_files(&src, 70..76, 3_000_000);
    make_files(&src, 200..250, 20_000);
    env.backup(&[src.to_str().unwrap()]);
    // Damage the largest data pack in its middle: a blob fails authentication during the restore.
    let prefix = env
        .repo
        .to_str()
        .unwrap()
        .strip_prefix(&format!("s3://{bucket}/"))
        .unwrap()
        .to_string();
    let key = damage_largest(s3, &env.vars, &bucket, &format!("{prefix}/data/"));

    let t = env.path("target");
    let snap_path = format!("latest:{}", src.display());
    let o = env.run(&["restore", &snap_path, "--target", t.to_str().unwrap()]);
    assert_no_panic(&o);
    assert_eq!(
        code(&o),
        1,
        "a damaged blob fails the restore: {}",
        stderr(&o)
    );
    assert!(
        stderr(&o).contains("restoring /") && stderr(&o).contains(&key[prefix.len() + 1..]),
        "the error names the file and the pack: {}",
        stderr(&o)
    );
    let left = walk_files(&t);
    assert!(left.len() < 56, "some file was not restored: {left:?}");
    for f in left {
        let name = f.file_name().unwrap();
        let want = fs::read(src.join(name)).unwrap();
        let got = fs::read(&f).unwrap();
        assert!(
            got == want,
            "{f:?} is left with {} bytes (the snapshot's has {}) or wrong content",
            got.len(),
            want.len()
        );
    }
}
