//! CBOR encoding helpers over ciborium, so every on-disk structure is written and read one way.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Appends the CBOR encoding of `v`. Writing into a `Vec` cannot fail for our types (no maps with
/// non-string keys, no floats that CBOR cannot hold), so an error here is a programming bug.
pub fn write<T: Serialize>(out: &mut Vec<u8>, v: &T) {
    if let Err(e) = ciborium::into_writer(v, &mut *out) {
        panic!("CBOR encoding of an in-memory value failed: {e}");
    }
}

pub fn to_vec<T: Serialize>(v: &T) -> Vec<u8> {
    let mut out = Vec::new();
    write(&mut out, v);
    out
}

/// Decodes one CBOR value that must span all of `bytes`.
pub fn read<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let mut cur = std::io::Cursor::new(bytes);
    let v = ciborium::from_reader(&mut cur).map_err(|e| e.to_string())?;
    if cur.position() as usize != bytes.len() {
        return Err(format!(
            "{} trailing bytes after the CBOR value",
            bytes.len() - cur.position() as usize
        ));
    }
    Ok(v)
}
