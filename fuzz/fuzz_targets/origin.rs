//! allowed_origins patterns: any string parses to a pattern or an error; `matches` and `allowed`
//! never panic; a pattern prints to a string that parses back to itself; an exact pattern matches
//! its own text.
#![no_main]

use imgate::origin::{allowed, OriginPattern};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // line 1..n-1: patterns; last line: the Origin header.
    let mut parts: Vec<&str> = text.split('\n').collect();
    let origin = parts.pop().unwrap_or("");
    let mut patterns = Vec::new();
    for p in parts {
        if let Ok(pat) = OriginPattern::try_from(p.to_owned()) {
            let shown = pat.to_string();
            let back = OriginPattern::try_from(shown.clone())
                .unwrap_or_else(|e| panic!("{shown:?} (from {p:?}) does not parse back: {e}"));
            assert_eq!(back, pat, "{shown:?} (from {p:?}) parses to another pattern");
            if !shown.contains("://*.") {
                assert!(pat.matches(&shown), "{shown:?} does not match itself");
            }
            patterns.push(pat);
        }
    }
    let any = patterns.iter().any(|p| p.matches(origin));
    assert_eq!(allowed(&patterns, Some(origin)), patterns.is_empty() || any);
    assert!(allowed(&patterns, None));
});
