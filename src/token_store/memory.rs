//! `--token-store memory`: the tokens of this process only. Nothing reaches the disk, so
//! every process logs in for itself (shared machines, CI).

use crate::token_cache::{Discovered, Tokens};
use std::sync::Mutex;

#[derive(Default)]
pub struct MemoryStore(Mutex<Option<(Tokens, Discovered)>>);

impl MemoryStore {
    pub fn load(&self) -> Option<(Tokens, Discovered)> {
        self.0.lock().unwrap().clone()
    }

    pub fn save(&self, tokens: &Tokens, discovered: &Discovered) {
        *self.0.lock().unwrap() = Some((tokens.clone(), discovered.clone()));
    }

    /// Forget the tokens; true if there were any.
    pub fn remove(&self) -> bool {
        self.0.lock().unwrap().take().is_some()
    }
}
