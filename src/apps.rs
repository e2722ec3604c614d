//! The configured apps as the running gateway uses them: each app's pre-keyed UserSig key and its
//! multi-device policy, by `sdk_app_id`.
//!
//! The table is one immutable snapshot behind an [`ArcSwap`]: a login takes the snapshot of the app
//! once ([`Apps::get`]) and uses it throughout, so a change of the table (a reload) is seen by a
//! login either entirely or not at all.

use crate::config::AppConfig;
use crate::policy::Policy;
use crate::usersig::SigKey;
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::sync::Arc;

/// One configured app.
#[derive(Debug)]
pub struct App {
    pub sdk_app_id: u64,
    /// The key, then the previous keys: a UserSig verifies with any of them.
    pub keys: Vec<SigKey>,
    pub policy: Policy,
    /// Whose UserSig authenticates the Tencent REST facade.
    pub admin_identifier: String,
}

impl App {
    /// Builds an app from its validated config.
    pub fn from_config(c: &AppConfig) -> App {
        App {
            sdk_app_id: c.sdk_app_id,
            keys: std::iter::once(&c.key)
                .chain(&c.previous_keys)
                .map(|k| SigKey::new(k))
                .collect(),
            policy: c.policy().expect("the config was validated"),
            admin_identifier: c.admin_identifier.clone(),
        }
    }

    /// The key UserSigs are minted with.
    pub fn key(&self) -> &SigKey {
        &self.keys[0]
    }
}

/// The app table.
#[derive(Debug)]
pub struct Apps {
    table: ArcSwap<HashMap<u64, Arc<App>>>,
}

impl Apps {
    pub fn new(configs: &[AppConfig]) -> Apps {
        Apps {
            table: ArcSwap::from_pointee(Self::build(configs)),
        }
    }

    fn build(configs: &[AppConfig]) -> HashMap<u64, Arc<App>> {
        configs
            .iter()
            .map(|c| (c.sdk_app_id, Arc::new(App::from_config(c))))
            .collect()
    }

    /// The app's current snapshot.
    pub fn get(&self, app: u64) -> Option<Arc<App>> {
        self.table.load().get(&app).cloned()
    }

    pub fn contains(&self, app: u64) -> bool {
        self.table.load().contains_key(&app)
    }

    /// The configured app ids, sorted.
    pub fn ids(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self.table.load().keys().copied().collect();
        v.sort_unstable();
        v
    }
}
