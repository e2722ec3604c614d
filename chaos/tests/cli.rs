//! The command line of `imgate-chaos`: `--help` names the flags, and a run that cannot start (no
//! imgate binary there) is a harness failure, exit status 2, not a violation (1). Its build also puts
//! `target/debug/imgate-chaos` in place for the smoke run of scripts/test.sh.

use std::process::Command;

#[test]
fn help_and_a_harness_failure() {
    let bin = env!("CARGO_BIN_EXE_imgate-chaos");
    let out = Command::new(bin).arg("--help").output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--seed",
        "--secs",
        "--imgate",
        "--clients",
        "--users",
        "--keep",
    ] {
        assert!(text.contains(flag), "--help lacks {flag}: {text}");
    }
    let out = Command::new(bin)
        .args([
            "--imgate",
            "/nonexistent/imgate",
            "--secs",
            "1",
            "--seed",
            "5",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/imgate"), "{err}");
}
