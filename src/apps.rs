//! The configured apps as the running gateway uses them: each app's pre-keyed UserSig keys, its
//! multi-device policy and its admin identifier, by `sdk_app_id`, together with the throttle's
//! settings: everything a login decides with.
//!
//! The table is one immutable [`Snapshot`] behind an [`ArcSwap`]: a login takes the snapshot once
//! ([`Apps::snapshot`]) and uses it throughout, so a reload, which swaps the whole snapshot, is seen
//! by a login either entirely or not at all.

use crate::config::{AppConfig, ThrottleConfig};
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

/// What a login decides with, at one instant.
#[derive(Debug)]
pub struct Snapshot {
    apps: HashMap<u64, Arc<App>>,
    pub throttle: ThrottleConfig,
}

impl Snapshot {
    pub fn app(&self, app: u64) -> Option<&Arc<App>> {
        self.apps.get(&app)
    }
}

/// The app table.
#[derive(Debug)]
pub struct Apps {
    current: ArcSwap<Snapshot>,
}

impl Apps {
    pub fn new(configs: &[AppConfig], throttle: &ThrottleConfig) -> Apps {
        Apps {
            current: ArcSwap::from_pointee(Self::build(configs, throttle)),
        }
    }

    fn build(configs: &[AppConfig], throttle: &ThrottleConfig) -> Snapshot {
        Snapshot {
            apps: configs
                .iter()
                .map(|c| (c.sdk_app_id, Arc::new(App::from_config(c))))
                .collect(),
            throttle: throttle.clone(),
        }
    }

    /// Replaces the whole table (a reload).
    pub fn replace(&self, configs: &[AppConfig], throttle: &ThrottleConfig) {
        self.current.store(Arc::new(Self::build(configs, throttle)));
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// The app's current settings.
    pub fn get(&self, app: u64) -> Option<Arc<App>> {
        self.current.load().apps.get(&app).cloned()
    }

    pub fn contains(&self, app: u64) -> bool {
        self.current.load().apps.contains_key(&app)
    }

    /// The configured app ids, sorted.
    pub fn ids(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self.current.load().apps.keys().copied().collect();
        v.sort_unstable();
        v
    }
}
