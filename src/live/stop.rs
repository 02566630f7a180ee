//! Stop requests from outside a live command: Ctrl-C (SIGINT) and, on Unix,
//! SIGTERM. SIGTERM is what `scancel` and a Slurm time limit, `timeout`,
//! systemd and Kubernetes send; a live run stopped by it must keep what it
//! measured, as after Ctrl-C, rather than die with a half-written
//! `requests.jsonl` and no summary.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

/// Which signal asked a live command to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopSignal {
    /// SIGINT: Ctrl-C.
    Interrupt,
    /// SIGTERM: a scheduler, a supervisor or `timeout`.
    Terminate,
}

impl StopSignal {
    /// The shell's code for a process ended by this signal (128 + its
    /// number), which a command stopped by it exits with after writing its
    /// outputs.
    pub fn exit_code(self) -> u8 {
        match self {
            StopSignal::Interrupt => 130,
            StopSignal::Terminate => 143,
        }
    }

    /// How messages name it.
    pub fn name(self) -> &'static str {
        match self {
            StopSignal::Interrupt => "Ctrl-C (SIGINT)",
            StopSignal::Terminate => "SIGTERM",
        }
    }

    fn from_exit_code(code: u8) -> Option<StopSignal> {
        match code {
            130 => Some(StopSignal::Interrupt),
            143 => Some(StopSignal::Terminate),
            _ => None,
        }
    }
}

/// Waits for the first SIGINT or SIGTERM; needs a tokio runtime with its
/// signal driver. Once called, the signals no longer end the process by
/// themselves. A signal that cannot be listened for is never reported
/// (rather than reported at once, which would stop every run at its start).
pub async fn stop_signal() -> StopSignal {
    let interrupt = async {
        match tokio::signal::ctrl_c().await {
            Ok(()) => StopSignal::Interrupt,
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let terminate = async {
            match signal(SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                    StopSignal::Terminate
                }
                Err(_) => std::future::pending().await,
            }
        };
        tokio::select! {
            s = interrupt => s,
            s = terminate => s,
        }
    }
    #[cfg(not(unix))]
    {
        interrupt.await
    }
}

/// The first stop signal, shared between the task that listens for it and
/// work that checks it between steps (a live sweep's runs and cooldowns).
#[derive(Clone, Debug, Default)]
pub struct StopFlag(Arc<AtomicU8>);

impl StopFlag {
    /// A flag that [`stop_signal`] sets, listened for on `rt`.
    pub fn listen(rt: &tokio::runtime::Runtime) -> StopFlag {
        let flag = StopFlag::default();
        let setter = flag.clone();
        rt.spawn(async move { setter.set(stop_signal().await) });
        flag
    }

    /// Records `s` unless a signal came before it.
    pub fn set(&self, s: StopSignal) {
        let _ = self
            .0
            .compare_exchange(0, s.exit_code(), Ordering::SeqCst, Ordering::SeqCst);
    }

    /// The first signal, if one came.
    pub fn get(&self) -> Option<StopSignal> {
        StopSignal::from_exit_code(self.0.load(Ordering::SeqCst))
    }

    /// Completes once a signal has come (checked every 50 ms).
    pub async fn wait(&self) -> StopSignal {
        loop {
            if let Some(s) = self.get() {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sleeps for `d` unless a signal comes first; true when one did.
    pub fn sleep(&self, rt: &tokio::runtime::Runtime, d: Duration) -> bool {
        rt.block_on(async {
            tokio::select! {
                _ = self.wait() => true,
                () = tokio::time::sleep(d) => self.get().is_some(),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_the_shells_and_read_back() {
        for s in [StopSignal::Interrupt, StopSignal::Terminate] {
            assert_eq!(StopSignal::from_exit_code(s.exit_code()), Some(s));
        }
        assert_eq!(StopSignal::Interrupt.exit_code(), 128 + 2);
        assert_eq!(StopSignal::Terminate.exit_code(), 128 + 15);
        assert_eq!(StopSignal::from_exit_code(0), None);
    }

    #[test]
    fn the_first_signal_sticks_and_ends_a_sleep() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let flag = StopFlag::default();
        assert_eq!(flag.get(), None);
        assert!(!flag.sleep(&rt, Duration::from_millis(1)));
        flag.set(StopSignal::Terminate);
        flag.set(StopSignal::Interrupt);
        assert_eq!(flag.get(), Some(StopSignal::Terminate));
        // A sleep that a signal has ended returns at once, not after an hour.
        let t = std::time::Instant::now();
        assert!(flag.sleep(&rt, Duration::from_secs(3600)));
        assert!(t.elapsed() < Duration::from_secs(60));
    }
}
