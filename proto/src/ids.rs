//! The identity rules both sides check (contract §1): a client can validate before sending, and the
//! gateway answers 7003 (`user_id`, `to`) or 6017 (`instance_id`) for a value that breaks them.

/// Whether `s` is a valid `user_id`: 1..=32 bytes of `[A-Za-z0-9_-]`.
pub fn valid_user_id(s: &str) -> bool {
    (1..=32).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Whether `s` is a valid `instance_id`: 1..=64 bytes of printable ASCII without space (0x21..=0x7e).
pub fn valid_instance_id(s: &str) -> bool {
    (1..=64).contains(&s.len()) && s.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_id_rules() {
        for ok in ["a", "alice", "A-b_9", &"x".repeat(32)] {
            assert!(valid_user_id(ok), "{ok}");
        }
        for bad in ["", &"x".repeat(33), "a b", "a.b", "é", "a@b", "a/b"] {
            assert!(!valid_user_id(bad), "{bad}");
        }
    }

    #[test]
    fn instance_id_rules() {
        for ok in ["t", "tab-1", "!~", &"x".repeat(64)] {
            assert!(valid_instance_id(ok), "{ok}");
        }
        for bad in ["", " ", "a b", &"x".repeat(65), "é", "\t"] {
            assert!(!valid_instance_id(bad), "{bad}");
        }
    }
}
