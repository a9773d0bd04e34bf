//! `edge check` on arbitrary bytes: the whole configuration pipeline (YAML,
//! surface structs, validation, the summary `edge check` prints, and the
//! diagnostics it prints otherwise) must never panic or hang.
//!
//! The text is named as if it sat in the repository's `config/` directory,
//! so the relative certificate and static paths of the seed examples
//! resolve and validation runs to the end on them.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    // `edge check` reads the file with `read_to_string`: bytes that are not
    // UTF-8 are an error before any parsing.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let file = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../config/fuzz.yaml"
    ));
    match edge_userspace::config::parse(text, file) {
        Ok(config) => {
            let summary = config.summary();
            // Checking is a pure function of the text.
            let again = edge_userspace::config::parse(text, file).expect("second parse failed");
            assert!(again == config, "two parses of one text differ");
            assert_eq!(again.summary(), summary);
        }
        Err(e) => {
            let shown = e.to_string();
            assert!(!shown.is_empty(), "an error with no message");
        }
    }
});
