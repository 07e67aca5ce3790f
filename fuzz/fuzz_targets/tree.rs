#![no_main]
//! Trees: decode validates names (no `/`, `.`, `..`, NUL; sorted, unique) and kinds.
use libfuzzer_sys::fuzz_target;
use snap::tree::Tree;

fuzz_target!(|data: &[u8]| {
    if let Ok(t) = Tree::decode(data) {
        for n in &t.nodes {
            assert!(!n.name.contains(&b'/') && n.name != b".." && !n.name.is_empty());
        }
        assert_eq!(Tree::decode(&t.encode()).expect("re-encoded tree decodes"), t);
    }
});
