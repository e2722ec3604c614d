//! Interop of `imgate sig gen` / `imgate sig verify` (contract §2, §9) with the official TLSSigAPIv2
//! generators: PyPI `tls-sig-api-v2` 1.1 and npm `tls-sig-api-v2` 1.0.2, installed into `.interop/`
//! by `scripts/interop-setup.sh` (which this test runs once; it is fast when already installed).
//!
//! - tickets minted by both official generators are accepted, and their fields printed;
//! - the §2 rejections (70009, 70013, 70014, 70001, 70002, 70003) and their order;
//! - tickets from `imgate sig gen` are accepted by `scripts/interop/decode.py`, an independent
//!   standard-library decoder written from §2, and by the official packages' own HMAC routine and
//!   generator (`official_check.py`, `official_check.js`: neither package has a verify function).
//!
//! When the generators cannot be installed these tests FAIL with the setup's output: they are
//! never skipped.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;

const APP: u64 = 1_400_000_000;
/// The key, clock, user and ticket of /work/shared/FACTS.md's known vector.
const FACTS_KEY: &str = "5bd2850fff3ecb11d7c805251c51ee463a25727bddc2385f3fa8bfee1bb93b5e";
const FACTS_TIME: u64 = 1_700_000_000;
const FACTS_SIG: &str = "SNF4FmVCPucoXsBOpbVF3fFCf57JPm0ezZ1jeVILlVc=";
const FACTS_USERSIG: &str = "eJyrVgrxCdYrSy1SslJQMtIzUNJRAItkpqTmlWSmZUIkKjIT87NK82CSxSnZiQUFmSlAKUMTAyiAyqVWFGQWpQJlLMxM4IIlmbkgIUNzNMXFmekg44P93EzccsOcA0qT8yOKnfwLksLcjNPcnNNMzb0Ccg1Sq6IMs1LDPH1ywpJtlWoBk68y0A__";
const DEFAULT_EXPIRE: u64 = 180 * 86_400;

/// Users, keys, app ids and lifetimes that both generators mint for. Users include `_` and `-`
/// (the identifier alphabet the official docs allow) and 32 characters (their maximum); one key
/// is non-ASCII, since §2 keys the HMAC with the key's raw UTF-8 bytes.
const CASES: &[(u64, &str, &str, u64)] = &[
    (APP, FACTS_KEY, "xiaojun", 86_400),
    (APP, FACTS_KEY, "user_01-a", 60),
    (APP, "short-key", "A-b_C-9", DEFAULT_EXPIRE),
    (1_600_012_345, "ключ-clé-密钥", "10086", 3_600),
    (1, "k", "_-_", 315_360_000),
    (APP, FACTS_KEY, "abcdefghijklmnopqrstuvwxyz_-0123", 600),
];

// ---------------------------------------------------------------------------------------------
// setup and process helpers

struct Tools {
    root: PathBuf,
    python: PathBuf,
    node: PathBuf,
}

fn tools() -> &'static Tools {
    static TOOLS: OnceLock<Result<Tools, String>> = OnceLock::new();
    static REPORTED: AtomicBool = AtomicBool::new(false);
    match TOOLS.get_or_init(setup) {
        Ok(t) => t,
        Err(e) if !REPORTED.swap(true, Ordering::SeqCst) => panic!("{e}"),
        Err(_) => panic!("interop setup failed: see the first failing test's message"),
    }
}

fn setup() -> Result<Tools, String> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let script = root.join("scripts/interop-setup.sh");
    let out = Command::new("bash")
        .arg(&script)
        .current_dir(&root)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} failed ({}): the official UserSig generators (PyPI and npm tls-sig-api-v2) are \
             required by these interop tests, which are not skipped without them.\n\
             --- stdout ---\n{}--- stderr ---\n{}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        ));
    }
    let tools = Tools {
        python: root.join(".interop/bin/python"),
        node: root.join(".interop/bin/node"),
        root,
    };
    for p in [&tools.python, &tools.node] {
        if !p.is_file() {
            return Err(format!(
                "{} reported success but {} is missing",
                script.display(),
                p.display()
            ));
        }
    }
    Ok(tools)
}

struct Run {
    exit: i32,
    stdout: String,
    stderr: String,
}

fn run(cmd: &mut Command) -> Run {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    Run {
        exit: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn script(name: &str) -> PathBuf {
    tools().root.join("scripts/interop").join(name)
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock before 1970")
        .as_secs()
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Gen {
    Python,
    Node,
}
const GENERATORS: [Gen; 2] = [Gen::Python, Gen::Node];

/// Mints a UserSig with an official generator. `time` fixes the generator's clock.
fn mint(
    gen: Gen,
    appid: u64,
    key: &str,
    user: &str,
    expire: u64,
    time: Option<u64>,
    userbuf: Option<&str>,
) -> String {
    let t = tools();
    let mut cmd = match gen {
        Gen::Python => {
            let mut c = Command::new(&t.python);
            c.arg(script("mint.py"));
            c
        }
        Gen::Node => {
            let mut c = Command::new(&t.node);
            c.arg(script("mint.js"));
            c
        }
    };
    cmd.args([
        appid.to_string(),
        key.into(),
        user.into(),
        expire.to_string(),
    ]);
    if let Some(time) = time {
        cmd.args(["--time".to_string(), time.to_string()]);
    }
    if let Some(ub) = userbuf {
        cmd.args(["--userbuf", ub]);
    }
    let r = run(&mut cmd);
    assert_eq!(
        r.exit, 0,
        "{gen:?} generator failed for {appid}/{key:?}/{user:?}/{expire}: {}{}",
        r.stdout, r.stderr
    );
    let sig = r.stdout.trim().to_owned();
    assert!(
        !sig.is_empty() && !sig.contains(char::is_whitespace),
        "{gen:?} generator printed {:?}",
        r.stdout
    );
    sig
}

/// What `imgate sig verify` (or decode.py, which prints the same shape) answered.
#[derive(Debug)]
struct Verdict {
    exit: i32,
    /// `TLS.*` and `expire_at` lines, values trimmed.
    fields: HashMap<String, String>,
    /// `None` when the last line is `valid`, else the code of `invalid: code NNNNN: why`.
    code: Option<u32>,
    output: String,
}

fn parse_verdict(r: Run) -> Verdict {
    let mut fields = HashMap::new();
    let mut last = "";
    for line in r.stdout.lines() {
        if line.starts_with("TLS.") || line.starts_with("expire_at") {
            if let Some((k, v)) = line.split_once(':') {
                fields.insert(k.trim().to_owned(), v.trim().to_owned());
            }
        }
        if !line.trim().is_empty() {
            last = line.trim();
        }
    }
    let code = if last == "valid" {
        None
    } else {
        let rest = last.strip_prefix("invalid: code ").unwrap_or_else(|| {
            panic!(
                "last line is neither `valid` nor `invalid: code N: why`:\n{}{}",
                r.stdout, r.stderr
            )
        });
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        Some(
            digits
                .parse()
                .unwrap_or_else(|_| panic!("no code in {last:?}")),
        )
    };
    Verdict {
        exit: r.exit,
        fields,
        code,
        output: format!("{}{}", r.stdout, r.stderr),
    }
}

fn imgate() -> Command {
    Command::new(env!("CARGO_BIN_EXE_imgate"))
}

fn imgate_verify(appid: u64, key: &str, user: &str, sig: &str) -> Verdict {
    let mut cmd = imgate();
    cmd.args(["sig", "verify", "--sdk-app-id", &appid.to_string()])
        .args(["--key", key, "--user", user, sig]);
    parse_verdict(run(&mut cmd))
}

fn imgate_gen(appid: u64, key: &str, user: &str, expire: Option<u64>) -> String {
    let mut cmd = imgate();
    cmd.args(["sig", "gen", "--sdk-app-id", &appid.to_string()])
        .args(["--key", key, "--user", user]);
    if let Some(e) = expire {
        cmd.args(["--expire", &e.to_string()]);
    }
    let r = run(&mut cmd);
    assert_eq!(r.exit, 0, "imgate sig gen failed: {}{}", r.stdout, r.stderr);
    let sig = r.stdout.trim().to_owned();
    assert!(
        !sig.is_empty() && !sig.contains(char::is_whitespace),
        "imgate sig gen printed {:?}",
        r.stdout
    );
    sig
}

/// The independent decoder (plain Python, from §2).
fn decode_py(appid: u64, key: &str, user: &str, sig: &str, now_ms: Option<u64>) -> Verdict {
    let mut cmd = Command::new(&tools().python);
    cmd.arg(script("decode.py"))
        .args([appid.to_string(), key.into(), user.into(), sig.into()]);
    if let Some(n) = now_ms {
        cmd.args(["--now-ms".to_string(), n.to_string()]);
    }
    let v = parse_verdict(run(&mut cmd));
    let want_exit = if v.code.is_none() { 0 } else { 1 };
    assert_eq!(v.exit, want_exit, "decode.py exit code: {}", v.output);
    v
}

fn assert_valid(v: &Verdict, what: &str) {
    assert!(
        v.exit == 0 && v.code.is_none(),
        "{what}: expected `valid` and exit 0, got exit {}:\n{}",
        v.exit,
        v.output
    );
}

fn assert_code(v: &Verdict, code: u32, what: &str) {
    assert!(
        v.exit == 1 && v.code == Some(code),
        "{what}: expected `invalid: code {code}` and exit 1, got exit {} code {:?}:\n{}",
        v.exit,
        v.code,
        v.output
    );
}

fn field<'a>(v: &'a Verdict, name: &str) -> &'a str {
    v.fields
        .get(name)
        .unwrap_or_else(|| panic!("no {name} line in:\n{}", v.output))
}

/// Checks the fields printed by `imgate sig verify` for a ticket minted in `[t0, t1]`.
fn assert_fields(v: &Verdict, appid: u64, user: &str, expire: u64, t0: u64, t1: u64, what: &str) {
    assert_eq!(field(v, "TLS.ver"), "2.0", "{what}");
    assert_eq!(field(v, "TLS.identifier"), user, "{what}");
    assert_eq!(field(v, "TLS.sdkappid"), appid.to_string(), "{what}");
    assert_eq!(field(v, "TLS.expire"), expire.to_string(), "{what}");
    let time: u64 = field(v, "TLS.time")
        .parse()
        .unwrap_or_else(|_| panic!("{what}: TLS.time is not a number:\n{}", v.output));
    assert!(
        (t0..=t1).contains(&time),
        "{what}: TLS.time {time} not within the minting window [{t0}, {t1}]"
    );
    assert_eq!(field(v, "expire_at"), (time + expire).to_string(), "{what}");
    let sig = field(v, "TLS.sig");
    let raw = base64::engine::general_purpose::STANDARD
        .decode(sig)
        .unwrap_or_else(|e| panic!("{what}: TLS.sig {sig:?} is not standard base64: {e}"));
    assert_eq!(raw.len(), 32, "{what}: TLS.sig is not an HMAC-SHA256");
}

/// Encodes raw bytes the way a UserSig is: zlib, standard base64, then the §2 alphabet.
fn encode_ticket(json: &[u8]) -> String {
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    z.write_all(json).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(z.finish().unwrap());
    b64.replace('+', "*").replace('/', "-").replace('=', "_")
}

// ---------------------------------------------------------------------------------------------
// tickets from the official generators, verified by imgate

fn official_tickets_are_accepted(gen: Gen) {
    for &(appid, key, user, expire) in CASES {
        let what = format!("{gen:?} ticket {appid}/{key:?}/{user:?}/expire {expire}");
        let t0 = now_secs();
        let sig = mint(gen, appid, key, user, expire, None, None);
        let t1 = now_secs();
        let v = imgate_verify(appid, key, user, &sig);
        assert_valid(&v, &what);
        assert_fields(&v, appid, user, expire, t0, t1, &what);
        assert!(
            !v.fields.contains_key("TLS.userbuf"),
            "{what}: {}",
            v.output
        );
        // The independent decoder agrees (and so is itself checked against the generators).
        let d = decode_py(appid, key, user, &sig, None);
        assert_valid(&d, &format!("decode.py on {what}"));
        assert_eq!(field(&d, "TLS.sig"), field(&v, "TLS.sig"), "{what}");
        assert_eq!(field(&d, "TLS.time"), field(&v, "TLS.time"), "{what}");
    }
}

#[test]
fn python_generator_tickets_are_accepted() {
    official_tickets_are_accepted(Gen::Python);
}

#[test]
fn node_generator_tickets_are_accepted() {
    official_tickets_are_accepted(Gen::Node);
}

/// Both generators can add `TLS.userbuf` (base64 of the bytes, signed as that base64 text).
#[test]
fn official_tickets_with_userbuf_are_accepted() {
    for gen in GENERATORS {
        for (userbuf, b64) in [("abc", "YWJj"), ("room 42 ✓", "cm9vbSA0MiDinJM=")] {
            let what = format!("{gen:?} ticket with userbuf {userbuf:?}");
            let t0 = now_secs();
            let sig = mint(gen, APP, FACTS_KEY, "user_1-ub", 3_600, None, Some(userbuf));
            let t1 = now_secs();
            let v = imgate_verify(APP, FACTS_KEY, "user_1-ub", &sig);
            assert_valid(&v, &what);
            assert_fields(&v, APP, "user_1-ub", 3_600, t0, t1, &what);
            assert_eq!(field(&v, "TLS.userbuf"), b64, "{what}");
            assert_code(
                &imgate_verify(APP, "another key", "user_1-ub", &sig),
                70009,
                &format!("{what}, wrong key"),
            );
            assert_valid(
                &decode_py(APP, FACTS_KEY, "user_1-ub", &sig, None),
                &format!("decode.py on {what}"),
            );
        }
    }
}

/// FACTS.md's vector: the Python generator with its clock fixed reproduces it byte for byte, the
/// npm one encodes the same ticket differently (JSON key order and spacing) with the same
/// `TLS.sig`, and imgate decodes both and gets as far as the expiry (70001 comes after the HMAC).
#[test]
fn known_vector_from_facts() {
    let py = mint(
        Gen::Python,
        APP,
        FACTS_KEY,
        "xiaojun",
        86_400,
        Some(FACTS_TIME),
        None,
    );
    assert_eq!(py, FACTS_USERSIG, "the Python generator with a fixed clock");
    let js = mint(
        Gen::Node,
        APP,
        FACTS_KEY,
        "xiaojun",
        86_400,
        Some(FACTS_TIME),
        None,
    );
    assert_ne!(
        js, py,
        "the npm generator's JSON differs in key order and spacing"
    );
    for (gen, sig) in [("python", &py), ("node", &js)] {
        let v = imgate_verify(APP, FACTS_KEY, "xiaojun", sig);
        assert_code(&v, 70001, &format!("{gen} vector of 2023"));
        assert_eq!(field(&v, "TLS.sig"), FACTS_SIG, "{gen}");
        assert_eq!(field(&v, "TLS.time"), FACTS_TIME.to_string(), "{gen}");
        assert_eq!(field(&v, "TLS.expire"), "86400", "{gen}");
        assert_eq!(field(&v, "expire_at"), "1700086400", "{gen}");
        assert_code(
            &imgate_verify(APP, "not the key", "xiaojun", sig),
            70009,
            &format!("{gen} vector, wrong key"),
        );
        // The independent decoder at the boundary: valid at exactly time + expire.
        let end_ms = (FACTS_TIME + 86_400) * 1000;
        assert_valid(
            &decode_py(APP, FACTS_KEY, "xiaojun", sig, Some(end_ms)),
            &format!("decode.py, {gen} vector at its last millisecond"),
        );
        assert_code(
            &decode_py(APP, FACTS_KEY, "xiaojun", sig, Some(end_ms + 1)),
            70001,
            &format!("decode.py, {gen} vector one millisecond later"),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// rejections

/// Every §2 rejection that a ticket can earn on its own, in the table's order, for tickets of
/// both official generators; the independent decoder answers the same code each time.
#[test]
fn official_tickets_are_rejected_with_the_right_code() {
    let (user, key) = ("user_1-x", FACTS_KEY);
    for gen in GENERATORS {
        let good = mint(gen, APP, key, user, 3_600, None, None);
        // A lifetime of 0 expires at once: `now > time + 0` as soon as a millisecond has passed.
        let instant = mint(gen, APP, key, user, 0, None, None);
        // Minted 1000 s ago for 100 s.
        let old = mint(gen, APP, key, user, 100, Some(now_secs() - 1_000), None);
        let cases: &[(&str, u64, &str, &str, &String, u32)] = &[
            (
                "wrong key",
                APP,
                "5bd2850fff3ecb11d7c805251c51ee463a25727bddc2385f3fa8bfee1bb93b5f",
                user,
                &good,
                70009,
            ),
            (
                "key with a trailing newline",
                APP,
                "5bd2850fff3ecb11d7c805251c51ee463a25727bddc2385f3fa8bfee1bb93b5e\n",
                user,
                &good,
                70009,
            ),
            ("wrong user", APP, key, "user_1-y", &good, 70013),
            ("user differing in case", APP, key, "User_1-x", &good, 70013),
            ("wrong sdk app id", APP + 1, key, user, &good, 70014),
            (
                "wrong sdk app id and user (70014 first)",
                APP + 1,
                key,
                "other",
                &good,
                70014,
            ),
            (
                "wrong user and key (70013 first)",
                APP,
                "other key",
                "other",
                &good,
                70013,
            ),
            ("expire 0", APP, key, user, &instant, 70001),
            ("expired long ago", APP, key, user, &old, 70001),
            (
                "expired and wrong key (70009 first)",
                APP,
                "other key",
                user,
                &old,
                70009,
            ),
        ];
        for &(what, appid, k, u, sig, code) in cases {
            let what = format!("{gen:?} ticket, {what}");
            let v = imgate_verify(appid, k, u, sig);
            assert_code(&v, code, &what);
            // Decodable: the fields are printed even when invalid.
            assert_eq!(field(&v, "TLS.identifier"), user, "{what}");
            assert_eq!(field(&v, "TLS.sdkappid"), APP.to_string(), "{what}");
            assert_code(
                &decode_py(appid, k, u, sig, None),
                code,
                &format!("decode.py, {what}"),
            );
        }
        // The same good ticket is accepted with the right inputs, so the above is no fluke.
        assert_valid(
            &imgate_verify(APP, key, user, &good),
            &format!("{gen:?} good ticket"),
        );
    }
}

#[test]
fn empty_and_undecodable_tickets_are_rejected() {
    let good = mint(Gen::Python, APP, FACTS_KEY, "u_1-2", 3_600, None, None);
    let json_ok = |extra: &str| {
        format!(
            r#"{{"TLS.ver": "2.0", "TLS.identifier": "u_1-2", "TLS.sdkappid": {APP}, "TLS.expire": 3600, "TLS.time": {}{extra}}}"#,
            now_secs()
        )
    };
    let mut bomb = json_ok(r#", "TLS.sig": "x""#).into_bytes();
    bomb.splice(1..1, std::iter::repeat_n(b' ', 4 << 20)); // 4 MiB of whitespace in the JSON
    let garbage: Vec<(&str, String)> = vec![
        ("plain text", "garbage".into()),
        ("punctuation", "!!!!".into()),
        (
            "truncated zlib",
            good[..good.len() / 2].trim_end_matches('_').into(),
        ),
        (
            "standard alphabet `+`",
            format!("{}+", &good[..good.len() - 2]),
        ),
        (
            "standard alphabet `=`",
            format!("{}=", good.trim_end_matches('_')),
        ),
        ("base64 of text", encode_raw(b"hello world, not zlib")),
        ("zlib of text", encode_ticket(b"not json at all")),
        ("zlib of a JSON array", encode_ticket(b"[1, 2, 3]")),
        (
            "JSON without TLS.sig",
            encode_ticket(json_ok("").as_bytes()),
        ),
        (
            "TLS.sdkappid as a string",
            encode_ticket(
                json_ok(r#", "TLS.sig": "x""#)
                    .replace(&format!("{APP},"), &format!("\"{APP}\","))
                    .as_bytes(),
            ),
        ),
        ("zlib bomb", encode_ticket(&bomb)),
    ];
    assert_code(
        &imgate_verify(APP, FACTS_KEY, "u_1-2", ""),
        70002,
        "empty UserSig",
    );
    assert_code(
        &decode_py(APP, FACTS_KEY, "u_1-2", "", None),
        70002,
        "decode.py, empty UserSig",
    );
    for (what, sig) in &garbage {
        assert_code(&imgate_verify(APP, FACTS_KEY, "u_1-2", sig), 70003, what);
        assert_code(
            &decode_py(APP, FACTS_KEY, "u_1-2", sig, None),
            70003,
            &format!("decode.py, {what}"),
        );
    }
}

fn encode_raw(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD
        .encode(bytes)
        .replace('+', "*")
        .replace('/', "-")
        .replace('=', "_")
}

// ---------------------------------------------------------------------------------------------
// tickets from imgate, checked by the independent decoder and the official packages

fn official_check(python: bool, appid: u64, key: &str, user: &str, sig: &str) -> Run {
    let t = tools();
    let mut cmd = if python {
        let mut c = Command::new(&t.python);
        c.arg(script("official_check.py"));
        c
    } else {
        let mut c = Command::new(&t.node);
        c.arg(script("official_check.js"));
        c
    };
    cmd.args([appid.to_string(), key.into(), user.into(), sig.into()]);
    run(&mut cmd)
}

#[test]
fn imgate_gen_tickets_pass_the_independent_decoder_and_the_official_packages() {
    let mut cases: Vec<(u64, &str, &str, Option<u64>)> = CASES
        .iter()
        .map(|&(a, k, u, e)| (a, k, u, Some(e)))
        .collect();
    cases.push((APP, FACTS_KEY, "default_expire-user", None));
    for (appid, key, user, expire) in cases {
        let what = format!("imgate sig gen {appid}/{key:?}/{user:?}/expire {expire:?}");
        let t0 = now_secs();
        let sig = imgate_gen(appid, key, user, expire);
        let t1 = now_secs();
        let expire = expire.unwrap_or(DEFAULT_EXPIRE);

        let d = decode_py(appid, key, user, &sig, None);
        assert_valid(&d, &format!("decode.py on {what}"));
        assert_fields(
            &d,
            appid,
            user,
            expire,
            t0,
            t1,
            &format!("decode.py on {what}"),
        );
        assert!(
            !d.fields.contains_key("TLS.userbuf"),
            "{what}: {}",
            d.output
        );
        // decode.py is no rubber stamp.
        assert_code(
            &decode_py(appid, "other key", user, &sig, None),
            70009,
            &what,
        );
        assert_code(&decode_py(appid, key, "other", &sig, None), 70013, &what);
        assert_code(&decode_py(appid + 1, key, user, &sig, None), 70014, &what);

        for python in [true, false] {
            let r = official_check(python, appid, key, user, &sig);
            assert!(
                r.exit == 0 && r.stdout.contains(": ok"),
                "official {} package on {what}: exit {}\n{}{}",
                if python { "PyPI" } else { "npm" },
                r.exit,
                r.stdout,
                r.stderr
            );
            let r = official_check(python, appid, "other key", user, &sig);
            assert_eq!(
                r.exit, 1,
                "official check with a wrong key on {what}: {}{}",
                r.stdout, r.stderr
            );
        }

        // And the round trip through imgate itself.
        let v = imgate_verify(appid, key, user, &sig);
        assert_valid(&v, &format!("imgate sig verify on {what}"));
        assert_eq!(field(&v, "TLS.sig"), field(&d, "TLS.sig"), "{what}");
    }
    // A lifetime of 0 is expired at once for every reader.
    let sig = imgate_gen(APP, FACTS_KEY, "zero", Some(0));
    assert_code(
        &decode_py(APP, FACTS_KEY, "zero", &sig, None),
        70001,
        "gen --expire 0",
    );
    assert_code(
        &imgate_verify(APP, FACTS_KEY, "zero", &sig),
        70001,
        "gen --expire 0",
    );
}

/// The setup script is idempotent and, once installed, quick (it runs on every `cargo test`).
#[test]
fn setup_is_idempotent_and_quick_when_installed() {
    let root = &tools().root;
    let start = std::time::Instant::now();
    let r = run(Command::new("bash").arg(root.join("scripts/interop-setup.sh")));
    assert_eq!(r.exit, 0, "second setup run: {}{}", r.stdout, r.stderr);
    let took = start.elapsed();
    assert!(
        took.as_secs_f64() < 5.0,
        "setup took {took:?} although already installed"
    );
    assert!(Path::new(&tools().python).is_file() && Path::new(&tools().node).is_file());
}
