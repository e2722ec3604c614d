//! Tencent TLSSigAPIv2 UserSig: generation and verification (contract §2).
//!
//! A UserSig is `base64url'(zlib(JSON))`, where base64url' is standard base64 with `+`→`*`, `/`→`-`,
//! `=`→`_`, and the JSON carries `TLS.ver`, `TLS.identifier`, `TLS.sdkappid`, `TLS.expire`,
//! `TLS.time`, `TLS.sig` and optionally `TLS.userbuf`. `TLS.sig` is the standard base64 of
//! HMAC-SHA256(key, content) over the newline-terminated `name:value` lines of contract §2.
//!
//! Verification decodes the ticket, rebuilds the signed content from the decoded fields (key order and
//! whitespace in the JSON do not matter), and checks the fields in the order of the contract's table.
//! What this module does not own: the failed-login throttle (70050) and the admin revocation (70052),
//! which need shared state; the caller applies them around [`Decoded::verify`].

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use flate2::write::ZlibEncoder;
use flate2::{Compression, Decompress, FlushDecompress, Status};
use hmac::{Hmac, KeyInit, Mac};
use imgate_proto::Code;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::cell::RefCell;
use std::fmt;
use std::io::Write;

type HmacSha256 = Hmac<Sha256>;

/// Inflated tickets larger than this are rejected (70003): a real one is a few hundred bytes.
pub const MAX_INFLATED_BYTES: usize = 8 * 1024;
/// UserSig strings longer than this are rejected (70003) before decoding.
pub const MAX_USERSIG_CHARS: usize = 16 * 1024;
/// Default lifetime of `imgate sig gen`: 180 days.
pub const DEFAULT_EXPIRE_SECS: u64 = 180 * 24 * 3600;

/// Standard base64 that accepts `TLS.sig` with or without padding.
const SIG_B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// An app's secret key, pre-keyed once; each check clones the keyed HMAC state.
#[derive(Clone)]
pub struct SigKey {
    mac: HmacSha256,
}

impl fmt::Debug for SigKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigKey(..)")
    }
}

impl SigKey {
    /// Keys HMAC-SHA256 with the key's raw UTF-8 bytes, as every official generator does.
    pub fn new(key: &str) -> SigKey {
        SigKey {
            mac: HmacSha256::new_from_slice(key.as_bytes())
                .expect("HMAC accepts keys of any length"),
        }
    }

    fn keyed(&self) -> HmacSha256 {
        self.mac.clone()
    }
}

/// The fields a UserSig carries, as decoded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decoded {
    #[serde(rename = "TLS.ver")]
    pub ver: String,
    #[serde(rename = "TLS.identifier")]
    pub identifier: String,
    #[serde(rename = "TLS.sdkappid")]
    pub sdkappid: u64,
    #[serde(rename = "TLS.expire")]
    pub expire: u64,
    #[serde(rename = "TLS.time")]
    pub time: u64,
    #[serde(rename = "TLS.sig")]
    pub sig: String,
    #[serde(
        rename = "TLS.userbuf",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub userbuf: Option<String>,
}

/// Why a UserSig was refused, with the contract code it answers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigError {
    #[error("UserSig is empty")]
    Empty,
    #[error("UserSig cannot be decoded: {0}")]
    Undecodable(String),
    #[error("sdk_app_id {0} is not configured")]
    AppNotConfigured(u64),
    #[error("TLS.sdkappid {sig} differs from sdk_app_id {login}")]
    AppIdMismatch { sig: u64, login: u64 },
    #[error("TLS.identifier {sig:?} differs from user_id {login:?}")]
    IdentifierMismatch { sig: String, login: String },
    #[error("HMAC does not match: signed with another key, or a field was altered")]
    BadHmac,
    #[error("expired at {expire_at} (unix seconds)")]
    Expired { expire_at: u64 },
}

impl SigError {
    /// The contract code this failure answers.
    pub fn code(&self) -> Code {
        match self {
            SigError::Empty => Code::SigEmpty,
            SigError::Undecodable(_) => Code::SigUndecodable,
            SigError::AppNotConfigured(_) => Code::AppNotConfigured,
            SigError::AppIdMismatch { .. } => Code::SigAppIdMismatch,
            SigError::IdentifierMismatch { .. } => Code::SigIdentifierMismatch,
            SigError::BadHmac => Code::SigBadHmac,
            SigError::Expired { .. } => Code::SigExpired,
        }
    }
}

/// The signed content of contract §2.
fn content(
    identifier: &str,
    sdkappid: u64,
    time: u64,
    expire: u64,
    userbuf: Option<&str>,
) -> String {
    let mut s = format!(
        "TLS.identifier:{identifier}\nTLS.sdkappid:{sdkappid}\nTLS.time:{time}\nTLS.expire:{expire}\n"
    );
    if let Some(ub) = userbuf {
        s.push_str("TLS.userbuf:");
        s.push_str(ub);
        s.push('\n');
    }
    s
}

fn to_url_alphabet(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '+' => '*',
            '/' => '-',
            '=' => '_',
            c => c,
        })
        .collect()
}

/// Mints a UserSig exactly as the official TLSSigAPIv2 generators do. `userbuf`, when given, is the
/// already base64-encoded string placed in `TLS.userbuf` (as the generators do with the raw buffer).
pub fn generate(
    key: &SigKey,
    sdkappid: u64,
    identifier: &str,
    expire: u64,
    time: u64,
    userbuf: Option<&str>,
) -> String {
    let mut mac = key.keyed();
    mac.update(content(identifier, sdkappid, time, expire, userbuf).as_bytes());
    let sig = STANDARD.encode(mac.finalize().into_bytes());
    let doc = Decoded {
        ver: "2.0".to_owned(),
        identifier: identifier.to_owned(),
        sdkappid,
        expire,
        time,
        sig,
        userbuf: userbuf.map(str::to_owned),
    };
    let json = serde_json::to_vec(&doc).expect("a UserSig document always serialises");
    let mut z = ZlibEncoder::new(Vec::with_capacity(json.len()), Compression::default());
    z.write_all(&json).expect("writing into a Vec cannot fail");
    let compressed = z.finish().expect("finishing into a Vec cannot fail");
    to_url_alphabet(&STANDARD.encode(compressed))
}

/// The expiry rule of contract §2: a ticket valid until `expire_at` (unix seconds) is expired once
/// `now_ms` is past that second (valid at exactly `expire_at * 1000`).
pub fn expired(expire_at: u64, now_ms: u64) -> bool {
    u128::from(now_ms) > u128::from(expire_at) * 1000
}

/// Decodes a UserSig into its fields: 70002 when empty, 70003 when it is not a well-formed ticket
/// (alphabet, zlib, JSON, a missing or mistyped field, too large). Inflation stops at
/// [`MAX_INFLATED_BYTES`], so a zlib bomb costs microseconds.
pub fn decode(user_sig: &str) -> Result<Decoded, SigError> {
    if user_sig.is_empty() {
        return Err(SigError::Empty);
    }
    if user_sig.len() > MAX_USERSIG_CHARS {
        return Err(SigError::Undecodable(format!(
            "longer than {MAX_USERSIG_CHARS} characters"
        )));
    }
    let mut std_b64 = Vec::with_capacity(user_sig.len());
    for b in user_sig.bytes() {
        std_b64.push(match b {
            b'*' => b'+',
            b'-' => b'/',
            b'_' => b'=',
            b'+' | b'/' | b'=' => {
                return Err(SigError::Undecodable(format!(
                    "character {:?} is outside the UserSig alphabet",
                    b as char
                )))
            }
            b => b,
        });
    }
    let compressed = STANDARD
        .decode(&std_b64)
        .map_err(|e| SigError::Undecodable(format!("base64: {e}")))?;
    let json = inflate(&compressed)?;
    serde_json::from_slice(&json).map_err(|e| SigError::Undecodable(format!("JSON: {e}")))
}

/// Inflates a zlib stream into at most [`MAX_INFLATED_BYTES`], reusing one decompressor per thread
/// (setting one up costs more than inflating a ticket).
fn inflate(compressed: &[u8]) -> Result<Vec<u8>, SigError> {
    thread_local! {
        static INFLATER: RefCell<Decompress> = RefCell::new(Decompress::new(true));
    }
    let bad = |why: String| SigError::Undecodable(format!("zlib: {why}"));
    let too_large =
        || SigError::Undecodable(format!("inflates to more than {MAX_INFLATED_BYTES} bytes"));
    INFLATER.with(|cell| {
        let mut d = cell.borrow_mut();
        d.reset(true);
        let mut out = Vec::with_capacity(1024);
        loop {
            let (in_before, out_before) = (d.total_in(), d.total_out());
            let rest = compressed.get(in_before as usize..).unwrap_or_default();
            let status = d
                .decompress_vec(rest, &mut out, FlushDecompress::None)
                .map_err(|e| bad(e.to_string()))?;
            if out.len() > MAX_INFLATED_BYTES {
                return Err(too_large());
            }
            if status == Status::StreamEnd {
                // Bytes after the zlib stream: not a ticket any generator makes (contract §16).
                if (d.total_in() as usize) < compressed.len() {
                    return Err(bad("bytes after the end of the stream".into()));
                }
                return Ok(out);
            }
            if out.len() == out.capacity() {
                let room = MAX_INFLATED_BYTES + 1 - out.len();
                out.reserve_exact(room.min(out.capacity()));
            } else if d.total_in() == in_before && d.total_out() == out_before {
                return Err(bad("truncated stream".into()));
            }
        }
    })
}

impl Decoded {
    /// `TLS.time + TLS.expire` in unix seconds (saturating).
    pub fn expire_at(&self) -> u64 {
        self.time.saturating_add(self.expire)
    }

    /// Expired when `now > TLS.time + TLS.expire`, with `now` in milliseconds.
    pub fn is_expired(&self, now_ms: u64) -> bool {
        expired(self.expire_at(), now_ms)
    }

    /// Checks the HMAC with the app's key in constant time.
    pub fn signature_matches(&self, key: &SigKey) -> bool {
        let Ok(sig) = SIG_B64.decode(self.sig.as_bytes()) else {
            return false;
        };
        let mut mac = key.keyed();
        mac.update(
            content(
                &self.identifier,
                self.sdkappid,
                self.time,
                self.expire,
                self.userbuf.as_deref(),
            )
            .as_bytes(),
        );
        mac.verify_slice(&sig).is_ok()
    }

    /// Checks a decoded ticket against a login, in the order of contract §2 (after decoding):
    /// app configured (`keys` is `None` when it is not), sdkappid, identifier, HMAC (with any of
    /// `keys`: the app's key and its previous keys during a rotation), expiry.
    pub fn verify(
        &self,
        keys: Option<&[SigKey]>,
        sdk_app_id: u64,
        user_id: &str,
        now_ms: u64,
    ) -> Result<(), SigError> {
        let keys = keys.ok_or(SigError::AppNotConfigured(sdk_app_id))?;
        if self.sdkappid != sdk_app_id {
            return Err(SigError::AppIdMismatch {
                sig: self.sdkappid,
                login: sdk_app_id,
            });
        }
        if self.identifier != user_id {
            return Err(SigError::IdentifierMismatch {
                sig: self.identifier.clone(),
                login: user_id.to_owned(),
            });
        }
        if !keys.iter().any(|k| self.signature_matches(k)) {
            return Err(SigError::BadHmac);
        }
        if self.is_expired(now_ms) {
            return Err(SigError::Expired {
                expire_at: self.expire_at(),
            });
        }
        Ok(())
    }
}

/// Decodes and verifies in one step (everything of contract §2 but throttle and revocation).
pub fn verify(
    user_sig: &str,
    key: Option<&SigKey>,
    sdk_app_id: u64,
    user_id: &str,
    now_ms: u64,
) -> Result<Decoded, SigError> {
    verify_any(
        user_sig,
        key.map(std::slice::from_ref),
        sdk_app_id,
        user_id,
        now_ms,
    )
}

/// [`verify`] accepting the HMAC of any of `keys` (key rotation).
pub fn verify_any(
    user_sig: &str,
    keys: Option<&[SigKey]>,
    sdk_app_id: u64,
    user_id: &str,
    now_ms: u64,
) -> Result<Decoded, SigError> {
    let d = decode(user_sig)?;
    d.verify(keys, sdk_app_id, user_id, now_ms)?;
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "5bd2850fff3ecb11d7c805251c51ee463a25727bddc2385f3fa8bfee1bb93b5e";
    const APP: u64 = 1_400_000_000;
    /// Minted by PyPI tls-sig-api-v2 1.1 with the clock fixed at 1700000000 (FACTS.md).
    const PY_SIG: &str = "eJyrVgrxCdYrSy1SslJQMtIzUNJRAItkpqTmlWSmZUIkKjIT87NK82CSxSnZiQUFmSlAKUMTAyiAyqVWFGQWpQJlLMxM4IIlmbkgIUNzNMXFmekg44P93EzccsOcA0qT8yOKnfwLksLcjNPcnNNMzb0Ccg1Sq6IMs1LDPH1ywpJtlWoBk68y0A__";
    const NOW_MS: u64 = 1_700_000_000_000;

    fn key() -> SigKey {
        SigKey::new(KEY)
    }

    /// Re-encodes a document without re-signing it, to tamper with single fields.
    fn encode_doc(doc: &serde_json::Value) -> String {
        let json = serde_json::to_vec(doc).unwrap();
        let mut z = ZlibEncoder::new(Vec::new(), Compression::default());
        z.write_all(&json).unwrap();
        to_url_alphabet(&STANDARD.encode(z.finish().unwrap()))
    }

    /// Encodes raw JSON text (which a `Value` cannot hold when a key repeats).
    fn encode_raw(json: &str) -> String {
        let mut z = ZlibEncoder::new(Vec::new(), Compression::default());
        z.write_all(json.as_bytes()).unwrap();
        to_url_alphabet(&STANDARD.encode(z.finish().unwrap()))
    }

    #[test]
    fn bytes_after_the_zlib_stream_are_undecodable() {
        let raw = STANDARD
            .decode(PY_SIG.replace('*', "+").replace('-', "/").replace('_', "="))
            .unwrap();
        for tail in [&b"\0"[..], b"garbage", &[0x78, 0x9c]] {
            let mut z = raw.clone();
            z.extend_from_slice(tail);
            let sig = to_url_alphabet(&STANDARD.encode(&z));
            assert_eq!(
                decode(&sig).unwrap_err().code(),
                Code::SigUndecodable,
                "{tail:?}"
            );
        }
        assert!(decode(PY_SIG).is_ok());
    }

    #[test]
    fn a_duplicate_json_key_is_undecodable() {
        let d = decode(PY_SIG).unwrap();
        let fields = format!(
            r#""TLS.ver":"2.0","TLS.sdkappid":{},"TLS.expire":{},"TLS.time":{},"TLS.sig":"{}""#,
            d.sdkappid, d.expire, d.time, d.sig
        );
        let once = format!(r#"{{"TLS.identifier":"xiaojun",{fields}}}"#);
        assert_eq!(decode(&encode_raw(&once)).unwrap(), d);
        for twice in [
            format!(r#"{{"TLS.identifier":"xiaojun","TLS.identifier":"xiaojun",{fields}}}"#),
            format!(r#"{{"TLS.identifier":"other",{fields},"TLS.identifier":"xiaojun"}}"#),
            format!(
                r#"{{"TLS.identifier":"xiaojun",{fields},"TLS.userbuf":"a","TLS.userbuf":"b"}}"#
            ),
        ] {
            let e = decode(&encode_raw(&twice)).unwrap_err();
            assert_eq!(e.code(), Code::SigUndecodable, "{twice}: {e}");
        }
    }

    fn doc_of(sig: &str) -> serde_json::Value {
        serde_json::to_value(decode(sig).unwrap()).unwrap()
    }

    #[test]
    fn fixed_vector_from_the_python_generator() {
        let d = decode(PY_SIG).unwrap();
        assert_eq!(d.identifier, "xiaojun");
        assert_eq!(d.sdkappid, APP);
        assert_eq!((d.time, d.expire), (1_700_000_000, 86_400));
        assert_eq!(d.sig, "SNF4FmVCPucoXsBOpbVF3fFCf57JPm0ezZ1jeVILlVc=");
        let mut mac = key().keyed();
        mac.update(content("xiaojun", APP, 1_700_000_000, 86_400, None).as_bytes());
        let hex: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            hex,
            "48d1781665423ee7285ec04ea5b545ddf1427f9ec93e6d1ecd9d6379520b9557"
        );
        verify(PY_SIG, Some(&key()), APP, "xiaojun", NOW_MS).unwrap();
    }

    #[test]
    fn our_generator_matches_the_fixed_vector_signature() {
        let ours = generate(&key(), APP, "xiaojun", 86_400, 1_700_000_000, None);
        assert_eq!(decode(&ours).unwrap(), decode(PY_SIG).unwrap());
        verify(&ours, Some(&key()), APP, "xiaojun", NOW_MS).unwrap();
    }

    #[test]
    fn expiry_boundary_is_inclusive_at_the_millisecond() {
        let end_ms = (1_700_000_000 + 86_400) * 1000;
        let k = key();
        assert!(verify(PY_SIG, Some(&k), APP, "xiaojun", end_ms).is_ok());
        assert_eq!(
            verify(PY_SIG, Some(&k), APP, "xiaojun", end_ms + 1).unwrap_err(),
            SigError::Expired {
                expire_at: 1_700_086_400
            }
        );
    }

    #[test]
    fn failures_answer_their_codes_in_table_order() {
        let k = key();
        let code = |sig: &str, key: Option<&SigKey>, app: u64, user: &str| {
            verify(sig, key, app, user, NOW_MS).unwrap_err().code()
        };
        assert_eq!(code("", Some(&k), APP, "xiaojun"), Code::SigEmpty);
        assert_eq!(
            code("eJy!!", Some(&k), APP, "xiaojun"),
            Code::SigUndecodable
        );
        assert_eq!(code(PY_SIG, None, APP, "xiaojun"), Code::AppNotConfigured);
        // not configured answers before the sdkappid comparison
        assert_eq!(code(PY_SIG, None, 1, "someone"), Code::AppNotConfigured);
        assert_eq!(code(PY_SIG, Some(&k), 1, "someone"), Code::SigAppIdMismatch);
        assert_eq!(
            code(PY_SIG, Some(&k), APP, "someone"),
            Code::SigIdentifierMismatch
        );
        assert_eq!(
            code(PY_SIG, Some(&SigKey::new("other")), APP, "xiaojun"),
            Code::SigBadHmac
        );
        let old = generate(&k, APP, "xiaojun", 10, 1_600_000_000, None);
        assert_eq!(code(&old, Some(&k), APP, "xiaojun"), Code::SigExpired);
        // a bad HMAC answers before expiry
        let old_other = generate(&SigKey::new("x"), APP, "xiaojun", 10, 1_600_000_000, None);
        assert_eq!(code(&old_other, Some(&k), APP, "xiaojun"), Code::SigBadHmac);
    }

    #[test]
    fn tampering_any_signed_field_breaks_the_hmac() {
        let k = key();
        for (field, value) in [
            ("TLS.time", serde_json::json!(1_700_000_001u64)),
            ("TLS.expire", serde_json::json!(86_401u64)),
            (
                "TLS.sig",
                serde_json::json!("AAAAFmVCPucoXsBOpbVF3fFCf57JPm0ezZ1jeVILlVc="),
            ),
            ("TLS.sig", serde_json::json!("not base64 at all!")),
            ("TLS.userbuf", serde_json::json!("AAEC")),
        ] {
            let mut doc = doc_of(PY_SIG);
            doc[field] = value;
            let err = verify(&encode_doc(&doc), Some(&k), APP, "xiaojun", NOW_MS).unwrap_err();
            assert_eq!(err, SigError::BadHmac, "tampered {field}");
        }
        // identifier and sdkappid tampering is caught by their own checks first
        let mut doc = doc_of(PY_SIG);
        doc["TLS.identifier"] = "bob".into();
        let sig = encode_doc(&doc);
        assert_eq!(
            verify(&sig, Some(&k), APP, "xiaojun", NOW_MS)
                .unwrap_err()
                .code(),
            Code::SigIdentifierMismatch
        );
        assert_eq!(
            verify(&sig, Some(&k), APP, "bob", NOW_MS).unwrap_err(),
            SigError::BadHmac
        );
        let mut doc = doc_of(PY_SIG);
        doc["TLS.sdkappid"] = 1_400_000_001u64.into();
        let sig = encode_doc(&doc);
        assert_eq!(
            verify(&sig, Some(&k), 1_400_000_001, "xiaojun", NOW_MS).unwrap_err(),
            SigError::BadHmac
        );
    }

    #[test]
    fn key_order_and_whitespace_do_not_matter() {
        let d = decode(PY_SIG).unwrap();
        let json = format!(
            "{{ \"TLS.sig\" : \"{}\",\n \"TLS.time\": {}, \"TLS.expire\":{}, \"TLS.sdkappid\": {}, \"TLS.identifier\": \"{}\", \"TLS.ver\": \"2.0\" }}",
            d.sig, d.time, d.expire, d.sdkappid, d.identifier
        );
        let mut z = ZlibEncoder::new(Vec::new(), Compression::best());
        z.write_all(json.as_bytes()).unwrap();
        let sig = to_url_alphabet(&STANDARD.encode(z.finish().unwrap()));
        verify(&sig, Some(&key()), APP, "xiaojun", NOW_MS).unwrap();
    }

    #[test]
    fn userbuf_is_signed_and_verified() {
        let k = key();
        let sig = generate(&k, APP, "alice", 3600, 1_700_000_000, Some("dXNlcmJ1Zg=="));
        let d = verify(&sig, Some(&k), APP, "alice", NOW_MS).unwrap();
        assert_eq!(d.userbuf.as_deref(), Some("dXNlcmJ1Zg=="));
        let mut doc = serde_json::to_value(&d).unwrap();
        doc.as_object_mut().unwrap().remove("TLS.userbuf");
        assert_eq!(
            verify(&encode_doc(&doc), Some(&k), APP, "alice", NOW_MS).unwrap_err(),
            SigError::BadHmac
        );
    }

    #[test]
    fn missing_or_mistyped_fields_are_undecodable() {
        for (field, value) in [
            ("TLS.time", Some(serde_json::json!("1700000000"))),
            ("TLS.expire", Some(serde_json::json!(-5))),
            ("TLS.sdkappid", Some(serde_json::json!(1.5))),
            ("TLS.identifier", Some(serde_json::json!(42))),
            ("TLS.sig", None),
            ("TLS.ver", None),
            ("TLS.time", None),
        ] {
            let mut doc = doc_of(PY_SIG);
            match value {
                Some(v) => doc[field] = v,
                None => {
                    doc.as_object_mut().unwrap().remove(field);
                }
            }
            let err = decode(&encode_doc(&doc)).unwrap_err();
            assert_eq!(err.code(), Code::SigUndecodable, "{field}: {err}");
        }
    }

    #[test]
    fn undecodable_inputs() {
        for bad in [
            "!!!!",
            "eJy+", // '+' is not in the UserSig alphabet
            "AAAA", // base64, but not zlib
            &to_url_alphabet(&STANDARD.encode(b"not zlib")),
        ] {
            assert_eq!(
                decode(bad).unwrap_err().code(),
                Code::SigUndecodable,
                "{bad}"
            );
        }
        let mut z = ZlibEncoder::new(Vec::new(), Compression::default());
        z.write_all(b"[1,2,3]").unwrap();
        let not_object = to_url_alphabet(&STANDARD.encode(z.finish().unwrap()));
        assert_eq!(
            decode(&not_object).unwrap_err().code(),
            Code::SigUndecodable
        );
        // a valid ticket cut short
        let cut = &PY_SIG[..PY_SIG.len() - 12];
        assert_eq!(decode(cut).unwrap_err().code(), Code::SigUndecodable);
        let long = "A".repeat(MAX_USERSIG_CHARS + 4);
        assert_eq!(decode(&long).unwrap_err().code(), Code::SigUndecodable);
    }

    #[test]
    fn zlib_bomb_stops_at_the_inflate_bound() {
        // 8 MiB of spaces compresses to ~8 KiB: it fits the string limit and would inflate 1000x.
        let mut z = ZlibEncoder::new(Vec::new(), Compression::best());
        z.write_all(&vec![b' '; 8 << 20]).unwrap();
        let bomb = to_url_alphabet(&STANDARD.encode(z.finish().unwrap()));
        assert!(
            bomb.len() <= MAX_USERSIG_CHARS,
            "bomb is {} chars",
            bomb.len()
        );
        let err = decode(&bomb).unwrap_err();
        assert_eq!(err.code(), Code::SigUndecodable);
        assert!(err.to_string().contains("inflates to more than"), "{err}");
    }
}
