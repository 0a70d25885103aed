//! Password hashing: argon2id with explicit parameters, run on the blocking
//! pool so a slow hash never stalls the async workers.
//!
//! Each hash takes 19 MiB for its duration, so at most [`max_concurrent`]
//! run at once in a process (one per core, at least two); the others wait
//! their turn. A burst of sign-ins, sign-ups or resets therefore queues
//! instead of exhausting memory. Callers check everything cheap (fields,
//! tokens, throttles) before they hash.

use super::AccountsError;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use tokio::sync::Semaphore;

/// OWASP's minimum for argon2id: 19 MiB of memory, 2 passes, 1 lane.
const MEMORY_KIB: u32 = 19 * 1024;
const ITERATIONS: u32 = 2;
const LANES: u32 = 1;

fn argon2() -> Argon2<'static> {
    let params = Params::new(MEMORY_KIB, ITERATIONS, LANES, None).expect("valid argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// How many hashes may run at once in this process.
pub fn max_concurrent() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .max(2)
}

fn permits() -> &'static Semaphore {
    static PERMITS: OnceLock<Semaphore> = OnceLock::new();
    PERMITS.get_or_init(|| Semaphore::new(max_concurrent()))
}

/// Gives a hash's permit back when the hash ends (on the blocking thread).
struct Slot;

impl Drop for Slot {
    fn drop(&mut self) {
        permits().add_permits(1);
    }
}

static RUNNING: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

/// The most hashes that ever ran at once in this process.
pub fn peak_concurrent() -> usize {
    PEAK.load(Ordering::Relaxed)
}

/// Runs `work` (one argon2 computation) on the blocking pool once a permit
/// is free.
async fn bounded<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, AccountsError> + Send + 'static,
) -> Result<T, AccountsError> {
    // The permit goes with the hash, not with the request: a client that
    // hangs up does not free a slot while its hash still runs.
    let permit = permits()
        .acquire()
        .await
        .map_err(|e| AccountsError::Hashing(e.to_string()))?;
    permit.forget();
    let slot = Slot;
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        let now = RUNNING.fetch_add(1, Ordering::SeqCst) + 1;
        PEAK.fetch_max(now, Ordering::SeqCst);
        let out = work();
        RUNNING.fetch_sub(1, Ordering::SeqCst);
        out
    })
    .await
    .map_err(|e| AccountsError::Hashing(e.to_string()))?
}

/// Hashes a password into a PHC string (`$argon2id$v=19$m=19456,t=2,p=1$…`).
pub async fn hash(password: String) -> Result<String, AccountsError> {
    bounded(move || {
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        argon2()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| AccountsError::Hashing(e.to_string()))
    })
    .await
}

/// A hash of a random password, verified against when the email is unknown,
/// so an unknown email costs the same time as a wrong password.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        argon2()
            .hash_password(crate::crypto::random_token(24).as_bytes(), &salt)
            .expect("hashing a random password")
            .to_string()
    })
}

/// Verifies `password` against `stored`, or against the dummy hash when there
/// is no account; always takes one full hash's time.
pub async fn verify(password: String, stored: Option<String>) -> Result<bool, AccountsError> {
    bounded(move || {
        let known = stored.is_some();
        let phc = stored.unwrap_or_else(|| dummy_hash().to_string());
        let parsed = PasswordHash::new(&phc).map_err(|e| AccountsError::Hashing(e.to_string()))?;
        let ok = argon2()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        Ok(known && ok)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn no_more_than_the_bound_hash_at_once() {
        let burst: Vec<_> = (0..4 * max_concurrent() + 4)
            .map(|i| tokio::spawn(hash(format!("password number {i}"))))
            .collect();
        for h in burst {
            assert!(h.await.unwrap().is_ok());
        }
        assert!(peak_concurrent() >= 1);
        assert!(
            peak_concurrent() <= max_concurrent(),
            "{} hashes ran at once; the bound is {}",
            peak_concurrent(),
            max_concurrent()
        );
    }

    #[tokio::test]
    async fn hashes_are_argon2id_phc_strings_that_verify() {
        let h = hash("correct horse battery".into()).await.unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify("correct horse battery".into(), Some(h.clone()))
            .await
            .unwrap());
        assert!(!verify("wrong horse battery".into(), Some(h)).await.unwrap());
        assert!(!verify("anything".into(), None).await.unwrap());
    }
}
