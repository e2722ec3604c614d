//! Embeds the browser console (`clients/console/`) and the JavaScript SDK it is built on
//! (`clients/js/src/`) into the binary, so `GET /console` needs no files and no build step at run
//! time. Every regular file of the two folders is embedded (no list to keep in step); a change to
//! either folder rebuilds.

use std::fmt::Write as _;
use std::path::Path;

fn embed(out: &mut String, name: &str, dir: &Path) {
    // A folder that does not exist yet is watched through its parent (cargo reruns the script on
    // every build for a missing path).
    let watch = if dir.exists() {
        dir
    } else {
        dir.parent().unwrap_or(dir)
    };
    println!("cargo:rerun-if-changed={}", watch.display());
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.retain(|p| p.is_file());
    files.sort();
    writeln!(out, "pub static {name}: &[(&str, &[u8])] = &[").unwrap();
    for p in files {
        let file = p.file_name().unwrap().to_string_lossy().into_owned();
        let abs = std::fs::canonicalize(&p).unwrap();
        writeln!(
            out,
            "    ({file:?}, include_bytes!({:?})),",
            abs.display().to_string()
        )
        .unwrap();
    }
    writeln!(out, "];").unwrap();
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = String::new();
    embed(&mut out, "CONSOLE", &root.join("clients/console"));
    embed(&mut out, "SDK", &root.join("clients/js/src"));
    let dest = Path::new(&std::env::var("OUT_DIR").unwrap()).join("assets.rs");
    // Rewritten only when it changed, so an unchanged console does not recompile the crate.
    if std::fs::read_to_string(&dest).ok().as_deref() != Some(out.as_str()) {
        std::fs::write(dest, out).unwrap();
    }
}
